// Tests of csp/parallel.hpp and csp/process.hpp: Parallel, Sequence, Spawn,
// results, exceptions, and scheduling across workers.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }

#if defined(CSP_TSAN) || defined(CSP_ASAN)
constexpr int kMany = 10000;  // a process start costs ~3 ms under TSan
#else
constexpr int kMany = 100000;
#endif

TEST(Parallel, ReturnsEveryResultOf100000Processes) {
  std::vector<csp::Process<long>> procs;
  procs.reserve(kMany);
  for (int i = 0; i < kMany; ++i)
    procs.push_back(csp::process([](int v) { return static_cast<long>(v) * 2; }, i));
  std::vector<long> results = csp::Parallel(std::move(procs));
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kMany));
  for (int i = 0; i < kMany; ++i) ASSERT_EQ(results[i], 2L * i);
}

TEST(Parallel, PackReturnsTupleWithMonostateForVoid) {
  std::atomic<int> ran{0};
  auto [a, b, c] = csp::Parallel(csp::process(square, 7), [&] { ran++; },
                                 csp::process([](std::string s) { return s + "!"; }, std::string("hi")));
  EXPECT_EQ(a, 49);
  EXPECT_EQ(b, std::monostate{});
  EXPECT_EQ(c, "hi!");
  EXPECT_EQ(ran.load(), 1);
}

TEST(Parallel, NestedParallelAndSequenceKeepOrder) {
  std::mutex m;
  std::vector<int> order;
  auto log = [&](int v) {
    std::lock_guard lock(m);
    order.push_back(v);
  };
  csp::Sequence(
      [&] {
        csp::Parallel([&] { log(1); }, [&] { log(1); },
                      [&] { csp::Sequence([&] { log(1); }, [&] { log(1); }); });
      },
      [&] { log(2); },
      [&] { csp::Parallel([&] { log(3); }, [&] { csp::Parallel([&] { log(3); }, [&] { log(3); }); }); });
  ASSERT_EQ(order.size(), 8u);
  EXPECT_EQ(std::vector<int>(order.begin(), order.begin() + 4), std::vector<int>(4, 1));
  EXPECT_EQ(order[4], 2);
  EXPECT_EQ(std::vector<int>(order.begin() + 5, order.end()), std::vector<int>(3, 3));
}

TEST(Parallel, SequenceRunsOneAfterAnother) {
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  auto step = [&] {
    int now = ++running;
    int prev = max_running.load();
    while (now > prev && !max_running.compare_exchange_weak(prev, now)) {
    }
    csp::yield();
    csp::sleep_for(1ms);
    --running;
  };
  csp::Sequence(step, step, step, csp::process(step) * 3);
  EXPECT_EQ(max_running.load(), 1);
}

TEST(Parallel, RethrowsFirstExceptionAfterAllFinish) {
  std::atomic<int> finished{0};
  auto slow = [&] {
    csp::sleep_for(20ms);
    finished++;
  };
  try {
    csp::Parallel(slow, [] { throw std::runtime_error("boom"); }, slow);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  EXPECT_EQ(finished.load(), 2);
}

TEST(Parallel, ProcessTimesNMakesNCopies) {
  std::atomic<int> count{0};
  auto results = csp::Parallel(csp::process([&](int k) { count += k; return k; }, 5) * 4);
  EXPECT_EQ(results, std::vector<int>(4, 5));
  EXPECT_EQ(count.load(), 20);
}

TEST(Spawn, JoinReturnsResultAndRethrows) {
  auto h = csp::Spawn(csp::process(square, 9));
  EXPECT_EQ(h.join(), 81);
  auto bad = csp::Spawn([] { throw std::logic_error("spawned failure"); });
  EXPECT_THROW(bad.join(), std::logic_error);
}

TEST(Spawn, UnjoinedChildrenJoinedWhenSpawnerEnds) {
  std::atomic<int> done{0};
  csp::Parallel([&] {
    for (int i = 0; i < 10; ++i)
      csp::Spawn([&] {
        csp::sleep_for(5ms);
        done++;
      });
  });
  EXPECT_EQ(done.load(), 10);
}

TEST(Runtime, SleepForWaitsAtLeastTheDuration) {
  for (auto d : {1ms, 10ms, 30ms}) {
    auto [elapsed] = csp::Parallel([d] {
      auto t0 = std::chrono::steady_clock::now();
      csp::sleep_for(d);
      return std::chrono::steady_clock::now() - t0;
    });
    EXPECT_GE(elapsed, d);
    EXPECT_LT(elapsed, d + 200ms);  // a generous bound: this VM is noisy
  }
}

TEST(Runtime, ThreadProcessRunsOnItsOwnThread) {
  auto main_id = std::this_thread::get_id();
  auto [id, worker] = csp::Parallel(csp::thread_process([] { return std::this_thread::get_id(); }),
                                    csp::process([] { return csp::this_worker(); }));
  EXPECT_NE(id, main_id);
  EXPECT_GE(worker, 0);
}

TEST(Runtime, ProcessesRunOnSeveralWorkers) {
  if (csp::worker_count() < 2) GTEST_SKIP() << "needs 2 workers (CSP_WORKERS)";
  std::mutex m;
  std::set<int> seen;
  // CPU-bound processes spawned from one process: idle workers must steal.
  csp::Parallel([&] {
    std::vector<csp::Process<void>> farm;
    for (int i = 0; i < 64; ++i)
      farm.push_back(csp::process([&] {
        volatile double x = 0;
        for (int k = 0; k < 200000; ++k) x = x + k * 0.5;
        std::lock_guard lock(m);
        seen.insert(csp::this_worker());
      }));
    csp::Parallel(std::move(farm));
  });
  EXPECT_GE(seen.size(), 2u) << "work was not stolen by an idle worker";
}

}  // namespace
