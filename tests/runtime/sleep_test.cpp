// Tests of csp::sleep_for / csp::sleep_until (csp/runtime.hpp) and the
// timers behind every timed wait: a sleep lasts at least its duration and
// not unreasonably longer, parks only the process (never the worker), many
// sleepers sleep at once, from processes, threads and main; timers of
// satisfied timed waits are disarmed (they do not hold off the deadlock
// report). Timing checks are generous upper bounds; the machine is shared.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <future>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// Slack for "a reasonable upper bound" on a loaded (or sanitized) machine.
constexpr auto kSlack = 1s;

enum class Where { process, thread, main };

template <class F>
auto run_in(Where where, F f) {
  if (where == Where::main) return f();
  auto p = where == Where::process ? csp::process(f) : csp::thread_process(f);
  return std::get<0>(csp::Parallel(std::move(p)));
}

class SleepIn : public ::testing::TestWithParam<Where> {};

TEST_P(SleepIn, SleepForLastsAtLeastItsDuration) {
  for (auto d : {1ms, 10ms, 50ms}) {
    auto elapsed = run_in(GetParam(), [d] {
      auto t0 = Clock::now();
      csp::sleep_for(d);
      return Clock::now() - t0;
    });
    EXPECT_GE(elapsed, d);
    EXPECT_LT(elapsed, d + kSlack);
  }
}

TEST_P(SleepIn, SleepForAcceptsAnyDurationType) {
  auto elapsed = run_in(GetParam(), [] {
    auto t0 = Clock::now();
    csp::sleep_for(std::chrono::microseconds(2500));
    csp::sleep_for(std::chrono::duration<double, std::milli>(2.5));
    return Clock::now() - t0;
  });
  EXPECT_GE(elapsed, 5ms);
  EXPECT_LT(elapsed, 5ms + kSlack);
}

TEST_P(SleepIn, SleepUntilReachesTheTimePoint) {
  auto [woke, target] = run_in(GetParam(), [] {
    auto target = Clock::now() + 20ms;
    csp::sleep_until(target);
    return std::make_pair(Clock::now(), target);
  });
  EXPECT_GE(woke, target);
  EXPECT_LT(woke, target + kSlack);
}

TEST_P(SleepIn, ZeroNegativeAndPastReturnAtOnce) {
  auto elapsed = run_in(GetParam(), [] {
    auto t0 = Clock::now();
    csp::sleep_for(0ms);
    csp::sleep_for(-10ms);
    csp::sleep_until(Clock::now() - 1s);
    csp::sleep_until(Clock::time_point{});
    return Clock::now() - t0;
  });
  EXPECT_LT(elapsed, kSlack);
}

INSTANTIATE_TEST_SUITE_P(Contexts, SleepIn, ::testing::Values(Where::process, Where::thread, Where::main),
                         [](const auto& info) {
                           return std::string(info.param == Where::process  ? "process"
                                              : info.param == Where::thread ? "thread"
                                                                             : "main");
                         });

TEST(Sleep, ParksTheProcessNotTheWorker) {
  // Both processes start on their parent's worker. While the first
  // sleeps, the second must run: with one worker only possible if the
  // sleep parked the process instead of blocking the thread.
  auto [ran_during_sleep] = csp::Parallel([] {
    std::atomic<bool> other_ran{false};
    auto [seen, unused] = csp::Parallel(csp::process([&] {
                                          csp::sleep_for(100ms);
                                          return other_ran.load();
                                        }),
                                        csp::process([&] { other_ran = true; }));
    (void)unused;
    return seen;
  });
  EXPECT_TRUE(ran_during_sleep);
}

// CPU time (user + system) this process used so far.
std::chrono::microseconds cpu_time() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec); };
  return us(u.ru_utime) + us(u.ru_stime);
}

TEST(Sleep, ASleepingProcessLeavesItsWorkerAsleep) {
  // The worker of a sleeping process has nothing to run: it may spin for
  // microseconds, then sleeps until the timer is due. (It once kept
  // spinning while any timer was armed: a whole CPU per sleeping worker.)
  const auto before = cpu_time();
  csp::Parallel(csp::process([] { csp::sleep_for(400ms); }));
  const auto used = cpu_time() - before;
  EXPECT_LT(used, 200ms) << "a 400 ms sleep cost " << used.count() << " us of CPU";
}

TEST(Sleep, ThousandProcessesSleepAtOnce) {
  constexpr int n = 1000;
  std::vector<csp::Process<void>> sleepers;
  for (int i = 0; i < n; ++i) sleepers.push_back(csp::process([] { csp::sleep_for(50ms); }));
  auto t0 = Clock::now();
  csp::Parallel(std::move(sleepers));
  auto elapsed = Clock::now() - t0;
  EXPECT_GE(elapsed, 50ms);
  // One after another they would take n * 50 ms = 50 s; half of that is a
  // bound even a sanitizer's slow process start-up stays far below.
  EXPECT_LT(elapsed, n * 50ms / 2) << "the sleeps did not overlap";
}

TEST(Sleep, ManyShortSleepsInALoop) {
  auto [count] = csp::Parallel([] {
    int n = 0;
    for (int i = 0; i < 2000; ++i, ++n) csp::sleep_for(std::chrono::microseconds(i % 3));
    return n;
  });
  EXPECT_EQ(count, 2000);
}

TEST(Sleep, SleepersWakeInDeadlineOrderOnOneWorker) {
  // Started by one process, all three sleepers' timers are armed on the
  // worker they run on; each records when it woke relative to its deadline.
  auto [late] = csp::Parallel([] {
    std::vector<csp::Process<Clock::duration>> sleepers;
    for (auto d : {30ms, 10ms, 20ms})
      sleepers.push_back(csp::process([d] {
        auto deadline = Clock::now() + d;
        csp::sleep_until(deadline);
        return Clock::now() - deadline;
      }));
    return csp::Parallel(std::move(sleepers));
  });
  for (auto l : late) {
    EXPECT_GE(l, Clock::duration::zero()) << "woke before its deadline";
    EXPECT_LT(l, kSlack);
  }
}

TEST(Sleep, SatisfiedTimedWaitsLeaveNoTimerArmed) {
  // A timed read that completes early must disarm its timer: otherwise the
  // runtime believes a timer may still wake someone, and the deadlock below
  // would only be reported a minute later.
  csp::Channel<int> ch;
  csp::Parallel(csp::process(
                    [](csp::Writer<int> w) {
                      for (int i = 0; i < 100; ++i) w.write(i);
                    },
                    ch.writer()),
                csp::process(
                    [](csp::Reader<int> r) {
                      for (int i = 0; i < 100; ++i) r.read_for(60s);
                    },
                    ch.reader()));
  csp::Channel<int> never{"never"};
  auto keep = never.writer();
  auto t0 = Clock::now();
  EXPECT_THROW(csp::Parallel(csp::process([](csp::Reader<int> r) { r.read(); }, never.reader())), csp::Deadlock);
  EXPECT_LT(Clock::now() - t0, 30s) << "a satisfied timed wait left a timer armed";
}

TEST(Sleep, SleepingMainIsNoDeadlock) {
  // A process waits for main, which sleeps before it writes.
  csp::Channel<int> ch;
  auto w = ch.writer();
  auto reader = csp::Spawn(csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()));
  csp::sleep_for(30ms);
  w.write(8);
  EXPECT_EQ(reader.join(), 8);
}

// Last of the plain tests in this file on purpose: if the sleep on the
// thread never returns, that thread stays parked in a timed wait, which
// counts as a possible wake-up and so would hold off the deadlock report
// that SatisfiedTimedWaitsLeaveNoTimerArmed expects.
TEST(SleepEdge, SleepUntilTheEarliestTimePointReturnsAtOnce) {
  // time_point::min() is long past. In a process, and on a plain thread
  // (the code path of main and thread_process), watched so that a sleep
  // that never returns fails the test instead of hanging the run.
  auto [in_process] = csp::Parallel([] {
    csp::sleep_until(Clock::time_point::min());
    return true;
  });
  EXPECT_TRUE(in_process);
  std::promise<void> returned;
  auto future = returned.get_future();
  std::thread([p = std::move(returned)]() mutable {
    csp::sleep_until(Clock::time_point::min());
    p.set_value();
  }).detach();  // detached: if it hangs, the test still ends
  EXPECT_EQ(future.wait_for(10s), std::future_status::ready)
      << "sleep_until(time_point::min()) on a thread did not return";
}

}  // namespace
