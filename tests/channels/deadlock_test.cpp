// Deadlock reports for channel networks (DESIGN §2, "Deadlock"): when every
// process is blocked on channels and nothing can wake any of them, the
// outermost Parallel throws csp::Deadlock naming each blocked process and
// the channel and operation it waits on. And no report when something can
// still wake a process (a timer, a busy thread, a busy main).
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kFillers = 2000;  // starting a process costs milliseconds under a sanitizer
#else
constexpr int kFillers = 20000;
#endif

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(Deadlock, RingOfWritersNamesEveryProcessAndChannel) {
  constexpr int n = 5;
  std::vector<csp::Channel<int>> link;
  for (int i = 0; i < n; ++i) link.emplace_back("link-" + std::to_string(i));
  std::vector<csp::Process<void>> ring;
  for (int i = 0; i < n; ++i)
    ring.push_back(csp::process(
                       [](csp::Writer<int> out, csp::Reader<int> in) {
                         out.write(1);  // everyone writes first: nobody reads
                         in.read();
                       },
                       link[i].writer(), link[(i + n - 1) % n].reader())
                       .named("ring-" + std::to_string(i)));
  try {
    csp::Parallel(std::move(ring));
    FAIL() << "the ring deadlocked but Parallel returned";
  } catch (const csp::Deadlock& e) {
    const std::string report = e.what();
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(contains(report, "ring-" + std::to_string(i))) << "process ring-" << i << " missing:\n" << report;
      EXPECT_TRUE(contains(report, "link-" + std::to_string(i))) << "channel link-" << i << " missing:\n" << report;
    }
    EXPECT_TRUE(contains(report, "write")) << report;
  }
}

TEST(Deadlock, MainBlockedOnAChannelIsReportedAsMain) {
  // main itself reads a channel whose only writer waits for another channel.
  csp::Channel<int> never{"never-written"}, answer{"to-main"};
  auto writer = csp::Spawn(csp::process([](csp::Reader<int> in, csp::Writer<int> out) { out.write(in.read()); },
                                        never.reader(), answer.writer())
                               .named("relay"));
  auto keep_never_open = never.writer();  // so `never` is not retired
  auto in = answer.reader();
  try {
    in.read();
    FAIL() << "main and relay deadlocked but the read returned";
  } catch (const csp::Deadlock& e) {
    const std::string report = e.what();
    EXPECT_TRUE(contains(report, "'main'")) << report;
    EXPECT_FALSE(contains(report, "'thread'")) << "main is no anonymous thread:\n" << report;
    EXPECT_TRUE(contains(report, "to-main")) << report;
  }
  EXPECT_THROW(writer.join(), csp::Deadlock) << "every blocked party of the deadlock is woken with it";
}

TEST(Deadlock, ReadersWaitingForEachOther) {
  csp::Channel<int> a{"to-alice"}, b{"to-bob"};
  try {
    csp::Parallel(csp::process(
                      [](csp::Reader<int> in, csp::Writer<int> out) {
                        out.write(in.read());
                      },
                      a.reader(), b.writer())
                      .named("alice"),
                  csp::process(
                      [](csp::Reader<int> in, csp::Writer<int> out) {
                        out.write(in.read());
                      },
                      b.reader(), a.writer())
                      .named("bob"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    const std::string report = e.what();
    EXPECT_TRUE(contains(report, "alice")) << report;
    EXPECT_TRUE(contains(report, "bob")) << report;
    EXPECT_TRUE(contains(report, "to-alice")) << report;
    EXPECT_TRUE(contains(report, "to-bob")) << report;
    EXPECT_TRUE(contains(report, "read")) << report;
  }
}

TEST(Deadlock, ReportedWhileAnUncountedThreadKeepsTakingTheChannelsLock) {
  // A plain blocking read or write is selected only under its channel's
  // lock, so the detector takes that lock to break it. A thread that never
  // blocks (not counted live) keeps taking the lock, by joining and leaving
  // ends: the detector must still get it, report, and break the deadlock.
  csp::Channel<int> a{"to-carol"}, b{"to-dave"};
  std::atomic<bool> stop{false};
  std::thread hammer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      auto r = a.reader();
      auto w = b.writer();
    }
  });
  std::string report;
  try {
    csp::Parallel(csp::process([](csp::Reader<int> in, csp::Writer<int> out) { out.write(in.read()); },
                               a.reader(), b.writer())
                      .named("carol"),
                  csp::process([](csp::Reader<int> in, csp::Writer<int> out) { out.write(in.read()); },
                               b.reader(), a.writer())
                      .named("dave"));
  } catch (const csp::Deadlock& e) {
    report = e.what();
  }
  stop.store(true);
  hammer.join();
  EXPECT_TRUE(contains(report, "carol")) << report;
  EXPECT_TRUE(contains(report, "dave")) << report;
  EXPECT_TRUE(contains(report, "to-carol")) << report;
}

TEST(Deadlock, BlockedSelectIsReported) {
  csp::Channel<int> a{"select-a"}, b{"select-b"};
  auto keep_a = a.writer();
  auto keep_b = b.writer();
  try {
    csp::Parallel(csp::process(
                      [](csp::Reader<int> ra, csp::Reader<int> rb) { csp::AltSelect(csp::input(ra), csp::input(rb)); },
                      a.reader(), b.reader())
                      .named("chooser"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    const std::string report = e.what();
    EXPECT_TRUE(contains(report, "chooser")) << report;
    EXPECT_TRUE(contains(report, "select")) << report;
    EXPECT_TRUE(contains(report, "select-a") || contains(report, "select-b")) << report;
  }
}

TEST(Deadlock, ThrownFromTheOutermostParallel) {
  csp::Channel<int> ch{"inner-never"};
  auto keep = ch.writer();
  try {
    csp::Parallel(csp::process([](csp::Reader<int> in) {
                    csp::Parallel(csp::process([](csp::Reader<int> r) { r.read(); }, in).named("inner"));
                  }, ch.reader()).named("outer"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    EXPECT_TRUE(contains(e.what(), "inner")) << e.what();
    EXPECT_TRUE(contains(e.what(), "inner-never")) << e.what();
  }
}

TEST(Deadlock, ThreadProcessBlockedForeverIsReported) {
  csp::Channel<int> ch{"thread-never"};
  auto keep = ch.writer();
  try {
    csp::Parallel(csp::thread_process([](csp::Reader<int> in) { in.read(); }, ch.reader()).named("io-thread"),
                  csp::process([](csp::Reader<int> in) { in.read(); }, ch.reader()).named("co"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    EXPECT_TRUE(contains(e.what(), "io-thread")) << e.what();
    EXPECT_TRUE(contains(e.what(), "co")) << e.what();
    EXPECT_TRUE(contains(e.what(), "thread-never")) << e.what();
  }
}

TEST(Deadlock, MainBlockedAloneGetsDeadlockInsteadOfHanging) {
  csp::Channel<int> ch{"main-never"};
  auto keep = ch.writer();
  auto r = ch.reader();
  try {
    r.read();
    FAIL() << "read returned";
  } catch (const csp::Deadlock& e) {
    EXPECT_TRUE(contains(e.what(), "main-never")) << e.what();
  }
}

TEST(Deadlock, RuntimeIsUsableAfterADeadlock) {
  csp::Channel<int> never{"never"};
  auto keep = never.writer();
  EXPECT_THROW(csp::Parallel(csp::process([](csp::Reader<int> r) { r.read(); }, never.reader())), csp::Deadlock);
  csp::Channel<int> ch;
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> w) { w.write(3); }, ch.writer()),
                                     csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 3);
}

// ---------------------------------------------------------------------------
// Not a deadlock

TEST(NoDeadlock, ReaderWaitingForASleepingWriter) {
  csp::Channel<int> ch;
  auto [unused, got] = csp::Parallel(csp::process(
                                         [](csp::Writer<int> w) {
                                           csp::sleep_for(30ms);  // a timer will wake it
                                           w.write(1);
                                         },
                                         ch.writer()),
                                     csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 1);
}

TEST(NoDeadlock, ReaderWaitingOnATimedSelectsTimeout) {
  csp::Channel<int> ch, other;
  auto keep = other.writer();
  auto [unused, got] = csp::Parallel(csp::process(
                                         [](csp::Writer<int> w, csp::Reader<int> o) {
                                           csp::PriSelect(csp::input(o), csp::timeout(30ms));
                                           w.write(1);
                                         },
                                         ch.writer(), other.reader()),
                                     csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 1);
}

TEST(NoDeadlock, ProcessWaitingForABusyThread) {
  csp::Channel<long> ch;
  auto [unused, got] = csp::Parallel(csp::thread_process(
                                         [](csp::Writer<long> w) {
                                           // Busy, never blocked, for a while.
                                           auto until = std::chrono::steady_clock::now() + 50ms;
                                           long spins = 0;
                                           while (std::chrono::steady_clock::now() < until) ++spins;
                                           w.write(spins);
                                         },
                                         ch.writer()),
                                     csp::process([](csp::Reader<long> r) { return r.read(); }, ch.reader()));
  (void)unused;
  EXPECT_GT(got, 0);
}

TEST(NoDeadlock, ProcessWaitingForABusyMain) {
  // main starts a writer, then is busy (not blocked) before it reads.
  csp::Channel<int> ch{"main-late"};
  auto r = ch.reader();
  auto writer = csp::Spawn(csp::process([](csp::Writer<int> w) { w.write(5); }, ch.writer()).named("early"));
  auto until = std::chrono::steady_clock::now() + 50ms;
  while (std::chrono::steady_clock::now() < until) {
  }
  EXPECT_EQ(r.read(), 5);
  writer.join();
}

TEST(NoDeadlock, ProcessesLaunchedFromAFreshMainBeforeItWaits) {
  // The first process blocks at once on a channel that only the last of many
  // processes serves; main is still launching them, so nothing is deadlocked.
  // csp::shutdown() makes main a thread the runtime has not seen yet.
  csp::shutdown();
  csp::Channel<int> ch{"late"};
  std::vector<csp::Process<int>> ps;
  ps.push_back(csp::process([](csp::Writer<int> w) { w.write(42); return 0; }, ch.writer()).named("early writer"));
  for (int i = 0; i < kFillers; ++i) ps.push_back(csp::process([] { return 1; }));
  ps.push_back(csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()).named("late reader"));
  auto results = csp::Parallel(std::move(ps));
  EXPECT_EQ(results.back(), 42);
}

}  // namespace
