// Tests of csp/sync.hpp: Semaphore, Mutex, Event, Barrier (in-process and
// interprocess), SharedValue and SharedArray; across coroutines, threads,
// workers and forked OS processes.
//
// Most suites are value-parameterised over the two kinds of state (heap,
// shared memory), so the interprocess algorithms are also checked under
// TSan within one OS process. The CrossProcess suite forks children that
// use the primitives from plain threads (futex path) and from coroutines
// of a fresh runtime (polling path).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// Which state a primitive is made with.
enum class Kind { inproc, interprocess };

std::string kind_name(const ::testing::TestParamInfo<Kind>& info) {
  return info.param == Kind::inproc ? "inproc" : "interprocess";
}

class Sync : public ::testing::TestWithParam<Kind> {
 protected:
  [[nodiscard]] bool shared() const { return GetParam() == Kind::interprocess; }
  csp::Semaphore semaphore(std::size_t n) const {
    return shared() ? csp::Semaphore(n, csp::interprocess) : csp::Semaphore(n);
  }
  csp::Mutex mutex() const { return shared() ? csp::Mutex(csp::interprocess) : csp::Mutex(); }
  csp::Event event() const { return shared() ? csp::Event(csp::interprocess) : csp::Event(); }
  csp::Barrier barrier(std::size_t n) const { return shared() ? csp::Barrier(n, csp::interprocess) : csp::Barrier(n); }
};

INSTANTIATE_TEST_SUITE_P(Kinds, Sync, ::testing::Values(Kind::inproc, Kind::interprocess), kind_name);

// ---------------------------------------------------------------------------
// Semaphore

TEST_P(Sync, SemaphoreCountsPermits) {
  csp::Semaphore s = semaphore(2);
  EXPECT_EQ(s.is_interprocess(), shared());
  EXPECT_TRUE(s.try_acquire());
  EXPECT_TRUE(s.try_acquire());
  EXPECT_FALSE(s.try_acquire());
  s.release(2);
  EXPECT_EQ(s.available(), 2u);
  csp::Semaphore copy = s;  // same semaphore
  EXPECT_TRUE(copy.try_acquire());
  EXPECT_EQ(s.available(), 1u);
}

TEST_P(Sync, SemaphoreTimedAcquireGivesUp) {
  csp::Semaphore s = semaphore(0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(s.try_acquire_for(20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  // From a coroutine too.
  auto [got] = csp::Parallel(csp::process([s]() mutable { return s.try_acquire_for(10ms); }));
  EXPECT_FALSE(got);
  s.release();
  EXPECT_TRUE(s.try_acquire_for(1s));
}

TEST_P(Sync, SemaphoreBoundsConcurrency) {
  csp::Semaphore s = semaphore(3);
  std::atomic<int> inside{0}, most{0};
  auto user = [&](csp::Semaphore sem) {
    for (int i = 0; i < 20; ++i) {
      sem.acquire();
      int now = ++inside;
      int prev = most.load();
      while (now > prev && !most.compare_exchange_weak(prev, now)) {
      }
      csp::yield();
      --inside;
      sem.release();
    }
  };
  csp::Parallel(csp::process(user, s) * 40, csp::thread_process(user, s), csp::thread_process(user, s));
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
  EXPECT_EQ(s.available(), 3u);
}

TEST_P(Sync, SemaphoreWaitParksOnlyTheProcess) {
  // With one worker, the acquirer must not block the worker, or the
  // releaser (same worker) could never run.
  csp::Semaphore s = semaphore(0);
  std::atomic<bool> got{false};
  csp::Parallel([&] { s.acquire(); got = true; },
                [&] {
                  csp::yield();
                  s.release();
                });
  EXPECT_TRUE(got.load());
}

TEST_P(Sync, SemaphoreReleaseFromThreadWakesCoroutineAndMain) {
  csp::Semaphore s = semaphore(0);
  // A thread_process (threads the runtime does not know of could not keep
  // the deadlock detector from counting everybody blocked).
  auto releaser = csp::Spawn(csp::thread_process([s]() mutable {
    std::this_thread::sleep_for(5ms);
    s.release(2);
  }));
  csp::Parallel([&] { s.acquire(); });
  s.acquire();  // main, the second permit
  releaser.join();
  EXPECT_EQ(s.available(), 0u);
}

// ---------------------------------------------------------------------------
// Mutex

TEST_P(Sync, MutexExcludesAcrossCoroutinesThreadsAndWorkers) {
  csp::Mutex m = mutex();
  long counter = 0;  // plain: only the mutex protects it (TSan checks)
  auto add = [&](csp::Mutex mu, int n) {
    for (int i = 0; i < n; ++i) {
      std::lock_guard lock(mu);
      long v = counter;
      if (i % 16 == 0) csp::yield();  // hold it across a switch
      counter = v + 1;
    }
  };
  csp::Parallel(csp::process(add, m, 200) * 50, csp::thread_process(add, m, 500), csp::thread_process(add, m, 500));
  EXPECT_EQ(counter, 50L * 200 + 1000);
}

TEST_P(Sync, MutexTryLockAndTimedLock) {
  csp::Mutex m = mutex();
  EXPECT_TRUE(m.try_lock());
  EXPECT_FALSE(m.try_lock());
  auto [timed_out] = csp::Parallel(csp::process([m]() mutable { return !m.try_lock_for(10ms); }));
  EXPECT_TRUE(timed_out);
  m.unlock();
  std::unique_lock lock(m, std::try_to_lock);
  EXPECT_TRUE(lock.owns_lock());
}

TEST_P(Sync, MutexHeldAcrossSleepDoesNotBlockWorker) {
  csp::Mutex m = mutex();
  csp::Event held = event();
  std::vector<int> order;  // guarded by m
  csp::Parallel(
      [&] {
        std::lock_guard lock(m);
        held.set();
        order.push_back(1);
        csp::sleep_for(5ms);  // holds m while parked; with one worker the other process runs meanwhile
        order.push_back(2);
      },
      [&] {
        held.wait();
        std::lock_guard lock(m);
        order.push_back(3);
      });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST_P(Sync, MutexUnlockWhenFreeThrows) {
  csp::Mutex m = mutex();
  EXPECT_THROW(m.unlock(), csp::Error);
}

// ---------------------------------------------------------------------------
// Event

TEST_P(Sync, EventWakesEveryWaiter) {
  csp::Event e = event();
  EXPECT_FALSE(e.is_set());
  std::atomic<int> woke{0};
  auto waiter = [&](csp::Event ev) {
    ev.wait();
    ++woke;
  };
  csp::Parallel(csp::process(waiter, e) * 20, csp::thread_process(waiter, e), [&] {
    csp::sleep_for(2ms);
    e.set();
  });
  EXPECT_EQ(woke.load(), 21);
  EXPECT_TRUE(e.is_set());
  e.wait();  // returns at once while set
  e.clear();
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait_for(10ms));
  auto [timed] = csp::Parallel(csp::process([e]() mutable { return e.wait_for(5ms); }));
  EXPECT_FALSE(timed);
}

TEST_P(Sync, EventWaitForReturnsTrueWhenSet) {
  csp::Event e = event();
  auto [got, _] = csp::Parallel(csp::process([e]() mutable { return e.wait_for(10s); }),
                                csp::process([e]() mutable { e.set(); }));
  EXPECT_TRUE(got);
}

// ---------------------------------------------------------------------------
// Barrier

TEST_P(Sync, BarrierKeepsProcessesInLockstep) {
  constexpr int kProcs = 8, kPhases = 40;
  csp::Barrier b = barrier(kProcs + 1);  // + a thread
  std::vector<std::atomic<int>> arrived(kPhases);
  std::atomic<bool> ok{true};
  auto member = [&](csp::Barrier bar) {
    for (int phase = 0; phase < kPhases; ++phase) {
      ++arrived[phase];
      bar.sync();
      if (arrived[phase].load() != kProcs + 1) ok = false;  // nobody passes early
      if (phase + 1 < kPhases && arrived[phase + 1].load() > kProcs + 1) ok = false;
    }
  };
  csp::Parallel(csp::process(member, b) * kProcs, csp::thread_process(member, b));
  EXPECT_TRUE(ok.load());
}

TEST_P(Sync, BarrierEnrollAndResign) {
  csp::Barrier b = barrier(1);
  b.sync();  // alone: returns at once
  b.enroll();
  b.enroll();
  EXPECT_EQ(b.enrolled(), 3u);
  std::atomic<int> passed{0};
  // Two sync; the third resigns instead, which completes their phase.
  csp::Parallel([&] { b.sync(); ++passed; }, [&] { b.sync(); ++passed; },
                [&] {
                  csp::sleep_for(2ms);
                  b.resign();
                });
  EXPECT_EQ(passed.load(), 2);
  EXPECT_EQ(b.enrolled(), 2u);
  b.resign();
  b.resign();
  EXPECT_THROW(b.resign(), csp::Error);
  EXPECT_THROW(b.sync(), csp::Error);
}

// ---------------------------------------------------------------------------
// Deadlock reports (in-process primitives only: an interprocess one could
// be released by another OS process, so it never counts as a deadlock).

TEST(SyncInproc, DeadlockOnMutexIsReported) {
  csp::Mutex m;
  m.lock();
  try {
    csp::Parallel(csp::process([m]() mutable { m.lock(); }).named("stuck locker"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    EXPECT_NE(std::string(e.what()).find("stuck locker"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("blocked in lock on 'mutex#"), std::string::npos) << e.what();
  }
  m.unlock();
  EXPECT_TRUE(m.try_lock());
}

TEST(SyncInproc, DeadlockOnBarrierEventSemaphoreIsReported) {
  csp::Barrier b{2};
  csp::Event e;
  csp::Semaphore s{0};
  try {
    csp::Parallel(csp::process([b]() mutable { b.sync(); }).named("half a barrier"),
                  csp::process([e]() mutable { e.wait(); }).named("event waiter"),
                  csp::process([s]() mutable { s.acquire(); }).named("acquirer"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("'half a barrier' blocked in sync on 'barrier#"), std::string::npos) << what;
    EXPECT_NE(what.find("'event waiter' blocked in wait on 'event#"), std::string::npos) << what;
    EXPECT_NE(what.find("'acquirer' blocked in acquire on 'semaphore#"), std::string::npos) << what;
  }
  // The barrier forgot the broken arrival: two new syncs complete a phase.
  csp::Parallel([&] { b.sync(); }, [&] { b.sync(); });
}

// ---------------------------------------------------------------------------
// SharedValue / SharedArray (one OS process)

struct Point {
  int x, y;
};

TEST(SharedValue, AtomicOperationsOnIntegers) {
  csp::SharedValue<long> v{5};
  EXPECT_EQ(v.fetch_add(3), 5);
  EXPECT_EQ(v.fetch_sub(1), 8);
  EXPECT_EQ(v.load(), 7);
  long expected = 6;
  EXPECT_FALSE(v.compare_exchange(expected, 100));
  EXPECT_EQ(expected, 7);
  EXPECT_TRUE(v.compare_exchange(expected, 100));
  EXPECT_EQ(v.exchange(1), 100);
  v.store(42);
  csp::SharedValue<long> copy = v;
  EXPECT_EQ(copy.load(), 42);
  EXPECT_EQ(v.with_lock([](long& x) { return x *= 2; }), 84);
  EXPECT_EQ(copy.load(), 84);
  csp::SharedValue<int> zero;
  EXPECT_EQ(zero.load(), 0);
}

TEST(SharedValue, CountsExactlyUnderContention) {
  csp::SharedValue<long> atomic_count{0};
  csp::SharedValue<long> locked_count{0};
  auto bump = [&](int n) {
    for (int i = 0; i < n; ++i) {
      atomic_count.fetch_add(1);
      locked_count.with_lock([](long& x) { ++x; });
      if (i % 64 == 0) csp::yield();
    }
  };
  csp::Parallel(csp::process(bump, 500) * 20, csp::thread_process(bump, 2000));
  EXPECT_EQ(atomic_count.load(), 20 * 500 + 2000);
  EXPECT_EQ(locked_count.load(), 20 * 500 + 2000);
}

TEST(SharedValue, NonIntegralUsesTheLock) {
  csp::SharedValue<Point> p{{1, 2}};
  p.with_lock([](Point& q) { q.x += 10; });
  Point got = p.load();
  EXPECT_EQ(got.x, 11);
  EXPECT_EQ(got.y, 2);
  p.store({3, 4});
  EXPECT_EQ(p.with_lock([](Point& q) { return q.x * q.y; }), 12);
  csp::SharedValue<double> d{0.5};
  csp::Parallel(csp::process([d]() mutable {
                  for (int i = 0; i < 1000; ++i) d.with_lock([](double& x) { x += 1; });
                }) * 4);
  EXPECT_EQ(d.load(), 4000.5);
}

TEST(SharedArray, IndexesIteratesAndLocks) {
  csp::SharedArray<int> a(5);
  EXPECT_EQ(a.size(), 5u);
  for (int x : a) EXPECT_EQ(x, 0);
  csp::SharedArray<int> b{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = -b[i];
  int sum = 0;
  for (int x : b) sum += x;
  EXPECT_EQ(sum, -45);
  EXPECT_THROW(b.at(10), std::out_of_range);
  csp::SharedArray<double> c(3, 1.5);
  EXPECT_EQ(c[2], 1.5);
  EXPECT_EQ(b.fetch_add(1, 10), -1);
  EXPECT_EQ(b.load(1), 9);
  double total = c.with_lock([](std::span<double> s) {
    double t = 0;
    for (double& x : s) t += x *= 2;
    return t;
  });
  EXPECT_EQ(total, 9.0);
  csp::SharedArray<Point> pts(2, Point{1, 1});
  EXPECT_EQ(pts[1].y, 1);
}

// ---------------------------------------------------------------------------
// Across OS processes (fork; the children of os_process are forked too).

/// Runs `body` in a forked child that exits with 0 if it returns true.
template <class F>
pid_t fork_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int status = 3;
    try {
      status = body() ? 0 : 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      status = 2;
    }
    ::_exit(status);
  }
  return pid;
}

int exit_status(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// In a child: a fresh runtime (the parent's workers do not exist here).
void child_runtime() {
  csp::detail::reset_after_fork();
  csp::configure({.workers = 2});
}

TEST(CrossProcess, SharedValueCountsIncrementsOfTenChildren) {
  csp::SharedValue<long> counter{0};
  csp::SharedArray<int> seen(10);
  std::vector<pid_t> kids;
  for (int k = 0; k < 10; ++k)
    kids.push_back(fork_child([=]() mutable {
      for (int i = 0; i < 1000; ++i) counter.fetch_add(1);
      seen[k] = k + 1;
      return true;
    }));
  for (pid_t pid : kids) EXPECT_EQ(exit_status(pid), 0);
  EXPECT_EQ(counter.load(), 10000);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(seen[k], k + 1);
}

TEST(CrossProcess, MutexAndWithLockExcludeChildrenThreadsAndCoroutines) {
  csp::Mutex m{csp::interprocess};
  csp::SharedValue<long> plain{0};  // updated by load + store: only m makes it safe
  csp::SharedValue<Point> point{{0, 0}};
  auto critical = [=](int n) mutable {
    for (int i = 0; i < n; ++i) {
      std::lock_guard lock(m);
      long v = plain.load();
      if (i % 32 == 0) csp::yield();
      plain.store(v + 1);
      point.with_lock([](Point& p) { ++p.x; });
    }
  };
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k)  // plain threads: futex path
    kids.push_back(fork_child([=]() mutable {
      critical(300);
      return true;
    }));
  for (int k = 0; k < 2; ++k)  // coroutines of a child runtime: polling path
    kids.push_back(fork_child([=]() mutable {
      child_runtime();
      csp::Parallel(csp::process(critical, 100) * 3);
      return true;
    }));
  csp::Parallel(csp::process(critical, 100) * 3);
  for (pid_t pid : kids) EXPECT_EQ(exit_status(pid), 0);
  EXPECT_EQ(plain.load(), 2 * 300 + 2 * 300 + 300);
  EXPECT_EQ(point.load().x, 1500);
}

TEST(CrossProcess, MutexHeldByDeadChildIsTakenOver) {
  csp::Mutex m{csp::interprocess};
  csp::Event locked{csp::interprocess};
  pid_t kid = fork_child([=]() mutable {
    m.lock();
    locked.set();
    ::_exit(0);  // dies holding m
    return true;
  });
  locked.wait();
  EXPECT_EQ(exit_status(kid), 0);  // reaped: its pid is gone now
  EXPECT_TRUE(m.try_lock_for(5s));
  m.unlock();
}

TEST(CrossProcess, EventsSignalBothWays) {
  csp::Event ping{csp::interprocess}, pong{csp::interprocess};
  pid_t thread_kid = fork_child([=]() mutable {
    ping.wait();
    pong.set();
    return true;
  });
  ping.set();
  EXPECT_TRUE(pong.wait_for(10s));
  EXPECT_EQ(exit_status(thread_kid), 0);
  ping.clear();
  pong.clear();
  pid_t coroutine_kid = fork_child([=]() mutable {
    child_runtime();
    auto [ok] = csp::Parallel(csp::process([=]() mutable {
      if (!ping.wait_for(10s)) return false;
      pong.set();
      return true;
    }));
    return ok;
  });
  csp::Parallel([=]() mutable {
    ping.set();
    EXPECT_TRUE(pong.wait_for(10s));
  });
  EXPECT_EQ(exit_status(coroutine_kid), 0);
}

TEST(CrossProcess, SemaphoreHandsPermitsBetweenProcesses) {
  csp::Semaphore items{0, csp::interprocess}, slots{1, csp::interprocess};
  csp::SharedValue<int> box{0};
  constexpr int kItems = 200;
  pid_t consumer = fork_child([=]() mutable {
    child_runtime();
    auto [sum] = csp::Parallel(csp::process([=]() mutable {
      long total = 0;
      for (int i = 0; i < kItems; ++i) {
        items.acquire();
        total += box.load();
        slots.release();
      }
      return total;
    }));
    return sum == long{kItems} * (kItems + 1) / 2;
  });
  for (int i = 1; i <= kItems; ++i) {  // main thread: futex path
    slots.acquire();
    box.store(i);
    items.release();
  }
  EXPECT_EQ(exit_status(consumer), 0);
}

TEST(CrossProcess, BarrierSyncsParentAndChildrenInPhases) {
  constexpr int kKids = 3, kPhases = 30;
  csp::Barrier b{kKids + 1, csp::interprocess};
  csp::SharedArray<int> arrivals(kPhases);
  csp::SharedValue<int> early{0};
  auto member = [=](int) mutable {
    for (int phase = 0; phase < kPhases; ++phase) {
      arrivals.fetch_add(phase, 1);
      b.sync();
      if (arrivals.load(phase) != kKids + 1) early.fetch_add(1);
    }
  };
  std::vector<pid_t> kids;
  for (int k = 0; k < kKids; ++k)
    kids.push_back(fork_child([=]() mutable {
      if (k == 0) {
        child_runtime();
        csp::Parallel(csp::process(member, k));
      } else {
        member(k);
      }
      return true;
    }));
  member(-1);
  for (pid_t pid : kids) EXPECT_EQ(exit_status(pid), 0);
  EXPECT_EQ(early.load(), 0);
}

}  // namespace

namespace {

// The same through csp::os_process (which forks too, and runs f on a plain
// thread of the child): primitives passed as arguments or captured.
TEST(CrossProcess, PrimitivesAsOsProcessArguments) {
  csp::Barrier start{3, csp::interprocess};
  csp::Mutex m{csp::interprocess};
  csp::Semaphore done{0, csp::interprocess};
  csp::SharedValue<long> plain{0};
  auto child = [](csp::Barrier b, csp::Mutex mu, csp::Semaphore s, csp::SharedValue<long> v) {
    b.sync();
    for (int i = 0; i < 500; ++i) {
      std::lock_guard lock(mu);
      v.store(v.load() + 1);
    }
    s.release();
  };
  csp::Parallel(csp::os_process(child, start, m, done, plain), csp::os_process(child, start, m, done, plain),
                [&] {
                  start.sync();
                  done.acquire();
                  done.acquire();
                });
  EXPECT_EQ(plain.load(), 1000);
}

}  // namespace

namespace {

TEST(CrossProcess, InprocPrimitiveInAChildIsRefused) {
  csp::Mutex heap_only;  // no csp::interprocess: the child would get a private copy
  try {
    csp::Parallel(csp::os_process([](csp::Mutex m) { std::lock_guard lock(m); }, heap_only));
    FAIL() << "the child used a private copy of an in-process mutex";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("without csp::interprocess"), std::string::npos) << e.what();
  }
}

}  // namespace
