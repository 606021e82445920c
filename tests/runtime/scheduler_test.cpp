// Tests of the scheduler (runtime/src/scheduler.cpp, csp/runtime.hpp):
// workers and worker ids, processes running in parallel on several workers,
// work stealing, yield, names, configure() before first use, and the
// deadlock report for processes parked forever on a runtime primitive.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace csp::detail {
std::string deadlock_message();  // runtime/src/wait.cpp: the last report
}

namespace {

using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
// Starting a process costs milliseconds under a sanitizer, and TSan allows
// at most 8128 live fibers (threads) at once.
constexpr long kShortProcesses = 2000;
#else
constexpr long kShortProcesses = 20000;
#endif

/// Spins (without yielding: the worker stays busy) until `done()` or a
/// generous deadline; returns whether done() came true. The deadline only
/// turns a would-be hang into a failure.
template <class F>
bool spin_until(F done, Clock::duration hang_guard = 10s) {
  const auto deadline = Clock::now() + hang_guard;
  while (!done())
    if (Clock::now() > deadline) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Workers

TEST(Scheduler, WorkerIdsInsideAndOutsideProcesses) {
  const int workers = static_cast<int>(csp::worker_count());
  EXPECT_GE(workers, 1);
  EXPECT_EQ(csp::this_worker(), -1) << "main is no worker";
  auto [in_process, in_thread] = csp::Parallel(csp::process([] { return csp::this_worker(); }),
                                               csp::thread_process([] { return csp::this_worker(); }));
  EXPECT_GE(in_process, 0);
  EXPECT_LT(in_process, workers);
  EXPECT_EQ(in_thread, -1);
}

TEST(Scheduler, WorkerCountFollowsTheEnvironment) {
  const char* env = std::getenv("CSP_WORKERS");
  if (env && *env && std::atoi(env) > 0) {
    EXPECT_EQ(csp::worker_count(), static_cast<unsigned>(std::atoi(env)));
  }
  EXPECT_EQ(csp::configuration().workers, csp::worker_count());
}

TEST(Scheduler, ProcessesRunInParallelOnEveryWorker) {
  // worker_count() processes that each spin, without yielding, until all of
  // them are running: this completes only if every worker runs one at once.
  const unsigned n = csp::worker_count();
  std::atomic<unsigned> running{0};
  std::mutex m;
  std::set<int> ids;
  std::vector<csp::Process<bool>> procs;
  for (unsigned i = 0; i < n; ++i)
    procs.push_back(csp::process([&] {
      {
        std::lock_guard lock(m);
        ids.insert(csp::this_worker());
      }
      ++running;
      return spin_until([&] { return running.load() == n; });
    }));
  auto results = csp::Parallel(std::move(procs));
  for (bool ok : results) EXPECT_TRUE(ok) << "the processes never ran all at once";
  EXPECT_EQ(ids.size(), n) << "each process must have had a worker of its own";
}

TEST(Scheduler, IdleWorkersStealFromABusyOne) {
  if (csp::worker_count() < 2) GTEST_SKIP() << "stealing needs at least 2 workers (the ctest run with CSP_WORKERS=4)";
  // A process starts children (they go to its own worker's queue) and then
  // keeps that worker busy without yielding until all children ran: they
  // can only run if other workers steal them.
  constexpr int children = 32;
  auto [result] = csp::Parallel([] {
    const int home = csp::this_worker();
    std::atomic<int> ran{0};
    std::atomic<int> on_home{0};
    std::vector<csp::Spawned<void>> handles;
    for (int i = 0; i < children; ++i)
      handles.push_back(csp::Spawn([&] {
        if (csp::this_worker() == home) ++on_home;
        ++ran;
      }));
    bool all_ran = spin_until([&] { return ran.load() == children; });
    for (auto& h : handles) h.join();
    return std::make_pair(all_ran, on_home.load());
  });
  EXPECT_TRUE(result.first) << "children queued on a busy worker were never stolen";
  EXPECT_EQ(result.second, 0) << "a child ran on the busy worker while its parent never yielded";
}

TEST(Scheduler, BusyThreadProcessDoesNotStopCoroutines) {
  // A thread_process that spins does not occupy a worker.
  std::atomic<bool> coroutine_ran{false};
  auto [spun, unused] = csp::Parallel(csp::thread_process([&] { return spin_until([&] { return coroutine_ran.load(); }); }),
                                      csp::process([&] { coroutine_ran = true; }));
  (void)unused;
  EXPECT_TRUE(spun);
}

TEST(Scheduler, YieldLetsAnotherProcessOnTheSameWorkerRun) {
  // Both processes start on the worker of their parent; the first spins
  // with yield() until the second has run. With one worker this terminates
  // only if yield() really lets the other run.
  auto [ok] = csp::Parallel([] {
    std::atomic<bool> other_ran{false};
    auto [yields, unused] = csp::Parallel(csp::process([&] {
                                            long n = 0;
                                            const auto deadline = Clock::now() + 30s;  // hang guard
                                            while (!other_ran.load() && Clock::now() < deadline) {
                                              csp::yield();
                                              ++n;
                                            }
                                            return other_ran.load() ? n : -1L;
                                          }),
                                          csp::process([&] { other_ran = true; }));
    (void)unused;
    return yields >= 0;
  });
  EXPECT_TRUE(ok);
}

TEST(Scheduler, YieldIsRoundRobinAmongTheReadyProcesses) {
  if (csp::worker_count() != 1) GTEST_SKIP() << "the order is only defined on one worker (the ctest run with CSP_WORKERS=1)";
  // Four processes on one worker step and yield in turn: after a yield,
  // every other ready process runs once before the yielder runs again.
  constexpr int kProcs = 4;
  constexpr int kSteps = 1000;
  // Started from a process, so all are queued before the first one runs.
  std::vector<int> order;
  order.reserve(kProcs * kSteps);
  csp::Parallel([&order] {
    std::vector<csp::Process<void>> procs;
    for (int id = 0; id < kProcs; ++id)
      procs.push_back(csp::process([&order, id] {
        for (int k = 0; k < kSteps; ++k) {
          order.push_back(id);  // one worker: no two processes run at once
          csp::yield();
        }
      }));
    csp::Parallel(std::move(procs));
  });
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kProcs * kSteps));
  for (std::size_t i = 0; i < order.size(); ++i)
    ASSERT_EQ(order[i], static_cast<int>(i % kProcs)) << "step " << i << " broke the round robin";
}

TEST(Scheduler, YieldRunsWhatWasQueuedMeanwhileFirst) {
  if (csp::worker_count() != 1) GTEST_SKIP() << "the order is only defined on one worker (the ctest run with CSP_WORKERS=1)";
  // Two processes yield to each other; one of them starts a third. The
  // third was queued before the starter yields again, so it runs before the
  // starter's next step, and the other yielder runs in between as well.
  std::vector<std::string> log;
  csp::Parallel([&log] {
    csp::Parallel(
        [&] {
          log.push_back("a1");
          csp::yield();
          log.push_back("a2");
          auto child = csp::Spawn([&] { log.push_back("child"); });
          csp::yield();
          log.push_back("a3");
          child.join();
        },
        [&] {
          for (int k = 1; k <= 3; ++k) {
            log.push_back("b" + std::to_string(k));
            csp::yield();
          }
        });
  });
  const std::vector<std::string> expected{"a1", "b1", "a2", "b2", "child", "a3", "b3"};
  EXPECT_EQ(log, expected);
}

TEST(Scheduler, IdleWorkersStealYieldedProcessesFromABusyOne) {
  if (csp::worker_count() < 2) GTEST_SKIP() << "stealing needs at least 2 workers (the ctest run with CSP_WORKERS=4)";
  // Children yield once on their parent's worker (they wait there in its
  // run queue), then the parent keeps its worker busy without yielding
  // until all children finished: they can only finish if other workers
  // take the yielded processes. (The parent itself may be stolen while it
  // is queued behind its children: "its worker" is where its yield returns.)
  constexpr int children = 16;
  auto [result] = csp::Parallel([] {
    std::atomic<int> busy_worker{-1};
    std::atomic<int> done{0};
    std::atomic<int> resumed_on_busy{0};
    std::vector<csp::Spawned<void>> handles;
    for (int i = 0; i < children; ++i)
      handles.push_back(csp::Spawn([&] {
        csp::yield();
        const int busy = busy_worker.load();
        if (busy >= 0 && csp::this_worker() == busy) ++resumed_on_busy;
        ++done;
      }));
    // Let the children run up to their yield (here, unless stolen first),
    // then never yield again until they are done.
    csp::yield();
    busy_worker = csp::this_worker();
    bool all_done = spin_until([&] { return done.load() == children; });
    for (auto& h : handles) h.join();
    return std::make_pair(all_done, resumed_on_busy.load());
  });
  EXPECT_TRUE(result.first) << "yielded processes queued on a busy worker were never stolen";
  EXPECT_EQ(result.second, 0) << "a child resumed on the worker its parent kept busy without yielding";
}

TEST(Scheduler, YieldingProcessesOnBusyWorkersAllFinish) {
  // Many processes yield in a loop and now and then spin a little without
  // yielding, so idle workers steal yielded processes, and owners hand
  // them over at their switches, while their workers keep switching.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr long kYields = 2000;
#else
  constexpr long kYields = 20000;
#endif
  const int procs_count = 4 * static_cast<int>(csp::worker_count()) + 2;
  std::atomic<long> total{0};
  std::vector<csp::Process<long>> procs;
  for (int p = 0; p < procs_count; ++p)
    procs.push_back(csp::process([&total, p] {
      long mine = 0;
      for (long k = 0; k < kYields; ++k) {
        if ((k + p) % 512 == 0) {
          const auto until = Clock::now() + 20us;
          while (Clock::now() < until) {
          }
        }
        ++mine;
        total.fetch_add(1, std::memory_order_relaxed);
        csp::yield();
      }
      return mine;
    }));
  auto counts = csp::Parallel(std::move(procs));
  for (long c : counts) EXPECT_EQ(c, kYields);
  EXPECT_EQ(total.load(), kYields * procs_count);
}

TEST(Scheduler, YieldOutsideAProcessReturns) {
  csp::yield();  // main: a thread yield
  auto [r] = csp::Parallel(csp::thread_process([] {
    csp::yield();
    return 1;
  }));
  EXPECT_EQ(r, 1);
}

TEST(Scheduler, ProcessNames) {
  EXPECT_STREQ(csp::this_process_name(), "main");
  auto [named, unnamed] = csp::Parallel(csp::process([] { return std::string(csp::this_process_name()); }).named("alpha"),
                                        csp::process([] { return std::string(csp::this_process_name()); }));
  EXPECT_EQ(named, "alpha");
  EXPECT_FALSE(unnamed.empty());
  auto p = csp::process([] {});
  EXPECT_FALSE(p.name().empty());
  p.named("beta");
  EXPECT_EQ(p.name(), "beta");
  csp::Parallel(std::move(p));
}

TEST(Scheduler, ManyShortProcessesFromOneProcess) {
  // Launched from inside a process (all on one worker's queue first), so
  // the run queue and stealing carry the load.
  auto [sum] = csp::Parallel([] {
    std::vector<csp::Process<long>> procs;
    procs.reserve(kShortProcesses);
    for (long i = 0; i < kShortProcesses; ++i) procs.push_back(csp::process([i] { return i; }));
    long s = 0;
    for (long v : csp::Parallel(std::move(procs))) s += v;
    return s;
  });
  EXPECT_EQ(sum, kShortProcesses * (kShortProcesses - 1) / 2);
}

TEST(Scheduler, ShutdownFromInsideAProcessIsAnError) {
  auto [threw] = csp::Parallel([] {
    try {
      csp::shutdown();
    } catch (const csp::Error&) {
      return true;
    }
    return false;
  });
  EXPECT_TRUE(threw);
}

TEST(Scheduler, ShutdownRightAfterAThreadProcessEnds) {
  // A thread_process's thread may still be leaving (its thread-local
  // parker unregistering from the runtime) when the Parallel that waited
  // for it has returned; shutting the runtime down then must not race with
  // that departure (TSan/ASan check this; a plain build may crash).
  for (int i = 0; i < 200; ++i) {
    auto [r] = csp::Parallel(csp::thread_process([] { return 1; }));
    ASSERT_EQ(r, 1);
    csp::shutdown();
  }
}

// ---------------------------------------------------------------------------
// Deadlock on a runtime primitive

TEST(Scheduler, ProcessesParkedForeverOnAPrimitiveAreReported) {
  // Two processes park on the runtime's one blocking mechanism (a Waiter
  // that nobody will ever select): the runtime must break the wait with
  // kDeadlock and report both, naming the operation and the object.
  auto park_forever = [](const char* object) {
    csp::detail::Waiter w("await", object);
    return csp::detail::wait(w, csp::detail::forever);
  };
  auto [t1, t2] = csp::Parallel(csp::process(park_forever, "primitive-one").named("parked-1"),
                                csp::process(park_forever, "primitive-two").named("parked-2"));
  EXPECT_EQ(t1, static_cast<std::uintptr_t>(csp::detail::kDeadlock));
  EXPECT_EQ(t2, static_cast<std::uintptr_t>(csp::detail::kDeadlock));
  const std::string report = csp::detail::deadlock_message();
  for (const char* needle : {"parked-1", "parked-2", "primitive-one", "primitive-two", "await"})
    EXPECT_NE(report.find(needle), std::string::npos) << needle << " missing from:\n" << report;
}

TEST(Scheduler, SleepingProcessIsNoDeadlockForAParkedOne) {
  // One process parks on a waiter that a sleeping process will select.
  csp::detail::Waiter* shared = nullptr;
  std::atomic<bool> published{false};
  auto [token, unused] = csp::Parallel(csp::process([&] {
                                         csp::detail::Waiter w("await", "woken-later");
                                         shared = &w;
                                         published.store(true);
                                         return csp::detail::wait(w, csp::detail::forever);
                                       }),
                                       csp::process([&] {
                                         while (!published.load()) csp::yield();
                                         csp::sleep_for(30ms);  // a timer can still wake someone: no deadlock
                                         if (shared->try_select(csp::detail::kWoken)) shared->wake();
                                       }));
  (void)unused;
  EXPECT_EQ(token, static_cast<std::uintptr_t>(csp::detail::kWoken));
}

// ---------------------------------------------------------------------------
// configure()

TEST(Configure, BeforeFirstUse) {
  csp::shutdown();  // back to "before first use"
  csp::Config wanted;
  wanted.workers = 3;
  wanted.stack_size = 70000;  // rounded up to whole pages
  wanted.spin_us = 7;
  csp::configure(wanted);
  const char* env = std::getenv("CSP_WORKERS");
  const bool env_workers = env && *env;
  csp::Config got = csp::configuration();
  if (!env_workers) {
    EXPECT_EQ(got.workers, 3u);
  }
  EXPECT_GE(got.stack_size, 70000u);
  EXPECT_EQ(got.stack_size % 4096, 0u);
  EXPECT_EQ(got.spin_us, 7u);

  auto [worker_in_range] = csp::Parallel([] { return csp::this_worker() < static_cast<int>(csp::worker_count()); });
  EXPECT_TRUE(worker_in_range);
  EXPECT_EQ(csp::worker_count(), got.workers);
  EXPECT_EQ(csp::configuration().stack_size, got.stack_size);

  // Running: the same configuration is accepted, another one is refused.
  EXPECT_NO_THROW(csp::configure(wanted));
  csp::Config other = wanted;
  other.stack_size = 256 * 1024;
  EXPECT_THROW(csp::configure(other), csp::Error);

  // After shutdown the runtime may be configured again.
  csp::shutdown();
  EXPECT_NO_THROW(csp::configure(other));
  auto [r] = csp::Parallel([] { return 5; });
  EXPECT_EQ(r, 5);
  EXPECT_EQ(csp::configuration().stack_size, 256u * 1024);

  // Restore the default (environment) configuration for the other tests.
  csp::shutdown();
  csp::configure(csp::Config{});
}

TEST(Configure, StackSizeHasAFloor) {
  csp::shutdown();
  csp::Config tiny;
  tiny.stack_size = 1;
  csp::configure(tiny);
  EXPECT_GE(csp::configuration().stack_size, 4096u);
  auto [r] = csp::Parallel([] { return 1; });  // still runs processes
  EXPECT_EQ(r, 1);
  csp::shutdown();
  csp::configure(csp::Config{});
}

TEST(Configure, ProcessesSpawnedFromMainAreJoinedByShutdown) {
  std::atomic<int> done{0};
  csp::Spawn([&] {
    csp::sleep_for(20ms);
    ++done;
  });
  csp::shutdown();
  EXPECT_EQ(done.load(), 1) << "shutdown returned before a process spawned from main finished";
}

}  // namespace
