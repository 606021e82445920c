// Peers that die: a child SIGKILLed mid-stream poisons the channels it was
// connected to (a blocked read, write or select in the parent wakes with
// ChannelPoisoned within a second, naming the child), os_process reports
// the signal, and nothing is left in /dev/shm. Once per transport.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <string>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;

namespace {

class Fault : public csp_test::TransportTest {};

/// Streams its pid, then values, until killed.
void streamer(csp::Writer<long> out, csp::Reader<int> hold) {
  out.write(::getpid());
  for (long i = 0; i < 100; ++i) out.write(i);
  hold.read();  // never comes: blocks until killed
}

TEST_P(Fault, KilledChildPoisonsABlockedRead) {
  csp::Channel<long> data;
  csp::Channel<int> never;
  std::string message;
  std::chrono::steady_clock::duration took{};
  auto parent = [&](csp::Reader<long> in) {
    const auto pid = static_cast<pid_t>(in.read());
    for (long i = 0; i < 100; ++i) ASSERT_EQ(in.read(), i);
    ::kill(pid, SIGKILL);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      in.read();
      ADD_FAILURE() << "read a value after the only writer died";
    } catch (const csp::ChannelPoisoned& e) {
      took = std::chrono::steady_clock::now() - t0;
      message = e.what();
    }
  };
  try {
    csp::Parallel(csp::os_process(streamer, data.writer(), never.reader()).named("streamer"),
                  csp::process(parent, data.reader()));
    FAIL() << "the killed child was not reported";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("streamer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos) << e.what();
  }
  EXPECT_LT(took, 1s);
  EXPECT_NE(message.find("poisoned"), std::string::npos) << message;
}

TEST_P(Fault, KilledChildPoisonsABlockedWriteAndSelect) {
  csp::Channel<int> to_child, other;
  csp::Channel<long> pid_ch;
  auto child = [](csp::Reader<int> in, csp::Writer<long> pid_out) {
    pid_out.write(::getpid());
    in.read();
    for (;;) csp::sleep_for(1h);  // takes no more: the parent's writes block
  };
  std::atomic<int> poisoned{0};  // counted by two processes, maybe on two workers
  csp::Channel<int> killed;
  auto writer = [&](csp::Writer<int> out, csp::Reader<long> pid_in, csp::Writer<int> done) {
    const auto pid = static_cast<pid_t>(pid_in.read());
    out.write(1);
    ::kill(pid, SIGKILL);
    done.write(0);
    try {
      out.write(2);
    } catch (const csp::ChannelPoisoned&) {
      ++poisoned;
    }
  };
  auto selecter = [&](csp::Writer<int> out, csp::Reader<int> unrelated, csp::Reader<int> go) {
    go.read();
    try {
      for (;;) csp::PriSelect(csp::output(out, 3), csp::input(unrelated));
    } catch (const csp::ChannelPoisoned&) {
      ++poisoned;
    }
  };
  EXPECT_THROW(csp::Parallel(csp::os_process(child, to_child.reader(), pid_ch.writer()),
                             csp::process(writer, to_child.writer(), pid_ch.reader(), killed.writer()),
                             csp::process(selecter, to_child.writer(), other.reader(), killed.reader())),
               csp::ProcessFailed);
  EXPECT_EQ(poisoned, 2);
}

// A child that exits (even with status 0) without closing its links
// cleanly — here by _exit from inside f — still poisons what it held.
TEST_P(Fault, ChildVanishingWithoutCloseIsLostPeer) {
  csp::Channel<int> ch;
  auto child = [](csp::Writer<int> out) {
    out.write(1);
    ::_exit(0);
  };
  auto parent = [](csp::Reader<int> in) {
    EXPECT_EQ(in.read(), 1);
    EXPECT_THROW(in.read(), csp::ChannelPoisoned);
  };
  csp::Parallel(csp::os_process(child, ch.writer()), csp::process(parent, ch.reader()));
}

// A child dies with its parent (PR_SET_PDEATHSIG), and a grandchild with it.
TEST_P(Fault, GrandchildDiesWithItsParent) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<long> pids;
  auto grandchild = [](csp::Writer<long> out) {
    out.write(::getpid());
    for (;;) csp::sleep_for(1h);
  };
  auto child = [grandchild](csp::Writer<long> out) {
    out.write(::getpid());
    csp::Parallel(csp::os_process(grandchild, out));
  };
  int grandchild_pidfd = -1;
  auto parent = [&](csp::Reader<long> in) {
    const auto child_pid = static_cast<pid_t>(in.read());
    const auto grandchild_pid = static_cast<pid_t>(in.read());
    grandchild_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, grandchild_pid, 0));
    ::kill(child_pid, SIGKILL);
  };
  EXPECT_THROW(csp::Parallel(csp::os_process(child, pids.writer()), csp::process(parent, pids.reader())),
               csp::ProcessFailed);
  ASSERT_GE(grandchild_pidfd, 0);
  // Readable once the grandchild has exited.
  EXPECT_TRUE(csp::detail::wait_fd(grandchild_pidfd, 1 /*EPOLLIN*/, csp::detail::Clock::now() + 5s));
  ::close(grandchild_pidfd);
}

INSTANTIATE_TEST_SUITE_P(Transports, Fault, csp_test::all_link_kinds(), csp_test::link_kind_name);

}  // namespace
