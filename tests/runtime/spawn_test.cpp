// Tests of csp::Spawn and csp::Spawned (csp/parallel.hpp): results and
// exceptions through join(), handles, implicit joins by the spawner (a
// process, a thread_process, main at shutdown), nested spawns.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <csp/csp.hpp>
#include <stdexcept>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int triple(int x) { return 3 * x; }

TEST(Spawn, JoinReturnsTheResult) {
  auto h = csp::Spawn(csp::process(triple, 14));
  EXPECT_EQ(h.join(), 42);
  auto s = csp::Spawn([] { return std::string("text"); });
  EXPECT_EQ(s.join(), "text");
  std::atomic<int> ran{0};
  auto v = csp::Spawn([&] { ++ran; });
  v.join();
  EXPECT_EQ(ran.load(), 1);
}

TEST(Spawn, DoneOnlyOnceFinished) {
  csp::Channel<int> go;
  auto w = go.writer();
  auto h = csp::Spawn(csp::process([](csp::Reader<int> r) { return r.read(); }, go.reader()));
  EXPECT_FALSE(h.done()) << "the process cannot have finished: it waits for a value";
  w.write(1);
  EXPECT_EQ(h.join(), 1);
  EXPECT_TRUE(h.done());
}

TEST(Spawn, JoinRethrowsOnTheFirstJoinOnly) {
  auto h = csp::Spawn([]() -> int { throw std::invalid_argument("bad input"); });
  try {
    h.join();
    FAIL() << "join did not rethrow";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad input");
  }
  EXPECT_EQ(h.join(), 0) << "a second join returns R{} without rethrowing";
}

TEST(Spawn, HandlesAreCopiesOfOneProcess) {
  auto h = csp::Spawn(csp::process(triple, 5));
  auto copy = h;
  EXPECT_EQ(copy.join(), 15);
  EXPECT_EQ(h.join(), 15);
  EXPECT_TRUE(h.done());
}

TEST(Spawn, JoinFromAnotherProcess) {
  auto h = csp::Spawn(csp::process(triple, 7));
  auto [r] = csp::Parallel([h]() mutable { return h.join(); });
  EXPECT_EQ(r, 21);
}

TEST(Spawn, ThreadProcess) {
  auto h = csp::Spawn(csp::thread_process([] { return csp::this_worker(); }));
  EXPECT_EQ(h.join(), -1);
}

TEST(Spawn, ProcessEndedByPoisonJoinsWithDefaultResult) {
  csp::Channel<int> ch;
  ch.poison();
  auto h = csp::Spawn(csp::process([](csp::Reader<int> r) { return r.read() + 1; }, ch.reader()));
  EXPECT_EQ(h.join(), 0);
}

TEST(Spawn, SpawnerJoinsUnjoinedChildrenBeforeItFinishes) {
  // Children wait on a channel that only a sibling of their spawner feeds:
  // the spawner's end must wait for them, and Parallel for it.
  csp::Channel<int> feed{"feed"};
  std::atomic<int> finished{0};
  csp::Parallel(csp::process(
                    [&](csp::Reader<int> in) {
                      for (int i = 0; i < 5; ++i)
                        csp::Spawn(csp::process(
                            [&](csp::Reader<int> r) {
                              r.read();
                              ++finished;
                            },
                            in));
                    },
                    feed.reader()),
                csp::process(
                    [](csp::Writer<int> out) {
                      for (int i = 0; i < 5; ++i) out.write(i);
                    },
                    feed.writer()));
  EXPECT_EQ(finished.load(), 5) << "Parallel returned before the spawned children finished";
}

TEST(Spawn, UnjoinedChildFailureReachesTheSpawnersJoiner) {
  try {
    csp::Parallel([] { csp::Spawn([] { throw std::runtime_error("child failed"); }); });
    FAIL() << "the child's exception was lost";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "child failed");
  }
}

TEST(Spawn, NestedSpawnsAreJoinedLevelByLevel) {
  std::atomic<int> leaves{0};
  csp::Parallel([&] {
    for (int i = 0; i < 4; ++i)
      csp::Spawn([&] {
        for (int j = 0; j < 4; ++j)
          csp::Spawn([&] {
            csp::sleep_for(1ms);
            ++leaves;
          });
      });
  });
  EXPECT_EQ(leaves.load(), 16);
}

TEST(Spawn, ThreadProcessJoinsWhatItSpawned) {
  std::atomic<int> done{0};
  csp::Parallel(csp::thread_process([&] {
    for (int i = 0; i < 3; ++i)
      csp::Spawn([&] {
        csp::sleep_for(5ms);
        ++done;
      });
  }));
  EXPECT_EQ(done.load(), 3);
}

TEST(Spawn, NamedSpawnedProcess) {
  auto h = csp::Spawn(csp::process([] { return std::string(csp::this_process_name()); }).named("worker-bee"));
  EXPECT_EQ(h.join(), "worker-bee");
}

TEST(Spawn, ManySpawnedAndJoinedInAnyOrder) {
  std::vector<csp::Spawned<int>> handles;
  for (int i = 0; i < 1000; ++i) handles.push_back(csp::Spawn(csp::process(triple, i)));
  long sum = 0;
  for (auto it = handles.rbegin(); it != handles.rend(); ++it) sum += it->join();
  EXPECT_EQ(sum, 3L * 999 * 1000 / 2);
}

/// Aborts the program with a message if `progress` stops moving for
/// `stall` (a hang guard: a lost wake-up would otherwise hang ctest until
/// its timeout).
class Watchdog {
 public:
  Watchdog(const std::atomic<long>& progress, const char* what, std::chrono::seconds stall)
      : thread_([this, &progress, what, stall] {
          std::unique_lock lock(mutex_);
          long last = -1;
          while (!stop_) {
            if (cv_.wait_for(lock, stall, [this] { return stop_; })) return;
            const long now = progress.load();
            if (now == last) {
              std::fprintf(stderr, "hang guard: %s made no progress for %lld s (stuck at %ld)\n", what,
                           static_cast<long long>(stall.count()), now);
              std::abort();
            }
            last = now;
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr long kJoinRaces = 10000;
#else
constexpr long kJoinRaces = 150000;
#endif

TEST(Spawn, JoinRacingTheEndOfTheProcessNeverMissesTheWakeUp) {
  // The joiner publishes itself while the process ends on another worker:
  // the last arrival must see the joiner, or the joiner must see the count
  // at zero (a store-load race; seq_cst on both sides). Many tiny
  // processes make the window likely to be hit.
  std::atomic<long> progress{0};
  Watchdog guard(progress, "Spawn().join() / Parallel()", std::chrono::seconds(10));
  for (long i = 0; i < kJoinRaces; ++i, ++progress) {
    if (i % 2) csp::Spawn([] {}).join();
    else csp::Parallel([] {}, [] {});
  }
}

TEST(Spawn, ProcessesSpawnedFromMainAreJoinedAtShutdown) {
  std::atomic<int> done{0};
  for (int i = 0; i < 3; ++i)
    csp::Spawn([&] {
      csp::sleep_for(10ms);
      ++done;
    });
  csp::shutdown();
  EXPECT_EQ(done.load(), 3);
}

}  // namespace
