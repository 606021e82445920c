// Tests of csp/os_process.hpp: results, failures, poison and retire across
// an OS process boundary (the channel semantics per transport are in
// conformance_test.cpp).
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <csp/csp.hpp>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;

namespace {

TEST(OsProcess, ReturnsItsResult) {
  auto [a, b] = csp::Parallel(csp::os_process([](int x) { return x * 2; }, 21),
                              csp::os_process([] { return std::string("from ") + std::to_string(::getpid()); }));
  EXPECT_EQ(a, 42);
  EXPECT_NE(b, "from " + std::to_string(::getpid()));
}

TEST(OsProcess, WritesToParent) {
  csp::Channel<int> ch{"numbers"};
  auto producer = [](csp::Writer<int> out) {
    for (int i = 0; i < 1000; ++i) out.write(i);
  };
  auto consumer = [](csp::Reader<int> in) {
    long sum = 0;
    for (int v : in) sum += v;
    return sum;
  };
  auto [a, sum] = csp::Parallel(csp::os_process(producer, ch.writer()), csp::process(consumer, ch.reader()));
  (void)a;
  EXPECT_EQ(sum, 999L * 1000 / 2);
}

TEST(OsProcess, ReadsFromParent) {
  csp::Channel<std::string> ch;
  auto consumer = [](csp::Reader<std::string> in) {
    std::string all;
    for (std::string v : in) all += v;
    return all;
  };
  auto producer = [](csp::Writer<std::string> out) {
    for (int i = 0; i < 5; ++i) out.write(std::to_string(i));
  };
  auto [all, b] = csp::Parallel(csp::os_process(consumer, ch.reader()), csp::process(producer, ch.writer()));
  (void)b;
  EXPECT_EQ(all, "01234");
}

TEST(OsProcess, ExceptionBecomesProcessFailed) {
  try {
    csp::Parallel(csp::os_process([] { throw std::runtime_error("boom"); }).named("thrower"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("thrower"), std::string::npos) << what;
    EXPECT_NE(what.find("boom"), std::string::npos) << what;
    EXPECT_NE(what.find("runtime_error"), std::string::npos) << what;
  }
}

TEST(OsProcess, ExitStatusAndSignalAreReported) {
  try {
    csp::Parallel(csp::os_process([] { ::_exit(3); }).named("quitter"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("status 3"), std::string::npos) << e.what();
  }
  try {
    csp::Parallel(csp::os_process([] { ::raise(SIGKILL); }).named("victim"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos) << e.what();
  }
}

/// In a child: how many of its fds are pipes and how many sockets.
std::pair<int, int> pipes_and_sockets() {
  int pipes = 0, sockets = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[64], target[256];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = ::readlink(link, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (std::strncmp(target, "pipe:", 5) == 0) ++pipes;
    if (std::strncmp(target, "socket:", 7) == 0) ++sockets;
  }
  return {pipes, sockets};
}

TEST(OsProcess, ChannelForcesItsTransport) {
  csp::transport_detail::set_default_link_kind(csp::transport_detail::LinkKind::tcp);
  csp::Channel<int> forced{csp::transport::pipe};
  csp::Channel<int> defaulted;
  auto count = [](csp::Writer<int>) { return pipes_and_sockets(); };
  // One after the other: a child forked while the other's link is open
  // would also see (and count) that link's fds.
  auto [with_pipe, with_tcp] = csp::Sequence(csp::os_process(count, forced.writer()),
                                             csp::os_process(count, defaulted.writer()));
  csp::transport_detail::set_default_link_kind(std::nullopt);
  // Each child also has the write end of its status pipe.
  EXPECT_GE(with_pipe.first, 3);
  EXPECT_EQ(with_pipe.second, 0);
  EXPECT_EQ(with_tcp.second, 2);  // the socket and its dup
}

TEST(OsProcess, EnvironmentSetsTheDefaultTransport) {
  ::setenv("CSP_TRANSPORT", "unix", 1);
  csp::Channel<int> ch;
  auto [got] = csp::Parallel(csp::os_process([](csp::Writer<int>) { return pipes_and_sockets(); }, ch.writer()));
  ::setenv("CSP_TRANSPORT", "bogus", 1);
  EXPECT_THROW(csp::Parallel(csp::os_process([](csp::Writer<int>) {}, ch.writer())), csp::TransportError);
  ::unsetenv("CSP_TRANSPORT");
  EXPECT_EQ(got.second, 2);
}

TEST(OsProcess, TimesNMakesChildrenWithFreshEnds) {
  csp::Channel<int> ch;
  auto worker = [](csp::Writer<int> out) {
    for (int i = 0; i < 10; ++i) out.write(::getpid());
  };
  auto reader = [](csp::Reader<int> in) {
    std::set<int> pids;
    int n = 0;
    for (int pid : in) {
      pids.insert(pid);
      ++n;
    }
    return std::make_pair(n, pids.size());
  };
  // Each copy's end retires on its own, so the reader's loop ends after all three.
  auto [unused, got] = csp::Parallel(csp::os_process(worker, ch.writer()).named("worker") * 3,
                                     csp::process(reader, ch.reader()));
  (void)unused;
  EXPECT_EQ(got.first, 30);
  EXPECT_EQ(got.second, 3u);
}

TEST(OsProcess, NonStandardExceptionIsReported) {
  try {
    csp::Parallel(csp::os_process([] { throw 42; }));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("int"), std::string::npos) << e.what();
  }
}

TEST(OsProcess, SpawnedAndJoined) {
  auto h = csp::Spawn(csp::os_process([](std::vector<int> v) { return std::accumulate(v.begin(), v.end(), 0); },
                                      std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(h.join(), 10);
}

// Fork links are not bound by the 64 MiB frame limit of addresses.
TEST(OsProcess, ValueLargerThanTheAddressFrameLimit) {
  csp::Channel<std::vector<char>> ch;
  const std::size_t n = (64u << 20) + 12345;
  auto child = [n](csp::Writer<std::vector<char>> out) {
    std::vector<char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>(i * 7);
    out.write(std::move(v));
  };
  auto parent = [n](csp::Reader<std::vector<char>> in) {
    auto v = in.read();
    if (v.size() != n) return false;
    for (std::size_t i = 0; i < n; ++i)
      if (v[i] != static_cast<char>(i * 7)) return false;
    return true;
  };
  auto [unused, ok] = csp::Parallel(csp::os_process(child, ch.writer()), csp::process(parent, ch.reader()));
  (void)unused;
  EXPECT_TRUE(ok);
}

TEST(OsProcess, ChildWithItsOwnProcessesAndSelects) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> a, b, out;
  auto child = [](csp::Reader<int> ra, csp::Reader<int> rb, csp::Writer<int> w) {
    // A network inside the child: two relays into one select.
    csp::Channel<int> merged;
    auto relay = [](csp::Reader<int> in, csp::Writer<int> o) { for (int v : in) o.write(v); };
    auto sink = [](csp::Reader<int> in, csp::Writer<int> o) { int s = 0; for (int v : in) s += v; o.write(s); };
    csp::Parallel(csp::process(relay, ra, merged.writer()), csp::process(relay, rb, merged.writer()),
                  csp::process(sink, merged.reader(), w));
  };
  auto parent = [](csp::Writer<int> wa, csp::Writer<int> wb, csp::Reader<int> r) {
    for (int i = 0; i < 50; ++i) {
      wa.write(i);
      wb.write(1000 + i);
    }
    wa.retire();
    wb.retire();
    return r.read();
  };
  auto [unused, sum] = csp::Parallel(csp::os_process(child, a.reader(), b.reader(), out.writer()),
                                     csp::process(parent, a.writer(), b.writer(), out.reader()));
  (void)unused;
  EXPECT_EQ(sum, 49 * 50 / 2 + 50 * 1000 + 49 * 50 / 2);
}

}  // namespace
