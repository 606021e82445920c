// Tests of csp/transport/address.hpp: Channel<T>::host / connect over
// tcp://, unix://, pipe:// and shm:// between OS processes; retries while
// the host is not up; the handshake's type check; a hosted channel that
// survives garbage and truncated frames; no files left behind.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csp/csp.hpp>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;

namespace {

enum class Scheme { tcp, unix_socket, pipe, shm };

std::string scheme_name(const ::testing::TestParamInfo<Scheme>& info) {
  switch (info.param) {
    case Scheme::tcp: return "tcp";
    case Scheme::unix_socket: return "unix";
    case Scheme::pipe: return "pipe";
    case Scheme::shm: return "shm";
  }
  return "?";
}

/// A fresh address of `scheme` (unique per call, in /tmp for files).
std::string fresh_address(Scheme scheme, const std::string& name = "jobs") {
  static int counter = 0;
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(++counter);
  switch (scheme) {
    case Scheme::tcp: return "tcp://127.0.0.1:0/" + name;
    case Scheme::unix_socket: return "unix:///tmp/csp-test-" + tag + ".sock/" + name;
    case Scheme::pipe: return "pipe:///tmp/csp-test-" + tag + ".fifo";
    case Scheme::shm: return "shm://csp-test-" + tag;
  }
  return "";
}

/// A TCP port of 127.0.0.1 free right now (bound to port 0, read, closed):
/// for a client that must know the address before the host is up.
int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

/// Collects what the transport error handler reports.
struct ErrorLog {
  std::mutex mutex;
  std::vector<std::string> messages;
  ErrorLog() {
    csp::set_transport_error_handler([this](const csp::TransportError& e) {
      std::lock_guard lock(mutex);
      messages.push_back(e.what());
    });
  }
  ~ErrorLog() { csp::set_transport_error_handler(nullptr); }
  std::vector<std::string> take() {
    std::lock_guard lock(mutex);
    return std::exchange(messages, {});
  }
};

class Address : public ::testing::TestWithParam<Scheme> {
 protected:
  void SetUp() override { tmp_before_ = csp_test::list_dir("/tmp"); }
  void TearDown() override {
    for (const auto& a : hosted_) csp::unhost(a);
    // Only this test program's names (csp-test-PID-N): the same suite may
    // run concurrently under another worker count.
    const std::string mine = "csp-test-" + std::to_string(::getpid()) + "-";
    for (const auto& name : csp_test::list_dir("/tmp"))
      if (name.rfind(mine, 0) == 0) {
        EXPECT_TRUE(tmp_before_.count(name)) << "left in /tmp: " << name;
      }
  }
  /// Hosts a channel of T at a fresh address; returns it and its bound address.
  template <class T>
  std::pair<csp::Channel<T>, std::string> host(const std::string& suffix = "") {
    auto ch = csp::Channel<T>::host(fresh_address(GetParam()) + suffix);
    std::string bound = csp::hosted_address(ch);
    hosted_.push_back(bound);
    return {ch, bound};
  }
  std::vector<std::string> hosted_;
  std::set<std::string> tmp_before_;
};

TEST_P(Address, ClientsWriteToTheHost) {
  auto [jobs, address] = host<int>();
  auto client = [](std::string address, int base) {
    auto ch = csp::Channel<int>::connect(address);
    auto w = ch.writer();
    for (int i = 0; i < 100; ++i) w.write(base + i);
  };
  auto reader = [](csp::Reader<int> in) {
    long sum = 0;
    for (int i = 0; i < 300; ++i) sum += in.read();
    return sum;
  };
  auto [a, b, c, sum] = csp::Parallel(csp::os_process(client, address, 0), csp::os_process(client, address, 1000),
                                      csp::os_process(client, address, 2000), csp::process(reader, jobs.reader()));
  (void)a, (void)b, (void)c;
  EXPECT_EQ(sum, 3L * 4950 + 100L * 3000);
}

TEST_P(Address, HostWritesClientsReadAndRetireEndsTheLoop) {
  auto [results, address] = host<std::string>();
  csp::Channel<int> ready;
  auto client = [](std::string address, csp::Writer<int> connected) {
    auto ch = csp::Channel<std::string>::connect(address);
    auto in = ch.reader();
    connected.write(0);
    int n = 0;
    for (std::string s : in) n += s == "x" ? 1 : 1000;
    return n;
  };
  auto writer = [](csp::Writer<std::string> out, std::string address, csp::Reader<int> connected) {
    connected.read();
    connected.read();
    for (int i = 0; i < 50; ++i) out.write("x");
    csp::unhost(address);  // the hosting leaves the writer side; `out` leaves as this process ends
  };
  auto [n1, n2, unused] = csp::Parallel(csp::os_process(client, address, ready.writer()),
                                        csp::os_process(client, address, ready.writer()),
                                        csp::process(writer, results.writer(), address, ready.reader()));
  (void)unused;
  EXPECT_EQ(n1 + n2, 50);
}

TEST_P(Address, ConnectRetriesUntilTheHostIsUp) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  std::string address = fresh_address(GetParam());
  if (GetParam() == Scheme::tcp) {  // the client needs the port before the host has bound it
    const int port = free_tcp_port();
    ASSERT_GT(port, 0) << "no free TCP port on 127.0.0.1";
    address = "tcp://127.0.0.1:" + std::to_string(port) + "/jobs";
  }
  csp::Channel<int> ready;
  auto client = [](std::string address, csp::Writer<int> signal) {
    signal.write(0);  // about to connect: the host is not up yet
    auto ch = csp::Channel<int>::connect(address, 10s);
    ch.writer().write(42);
  };
  auto hoster = [this](std::string address, csp::Reader<int> signal) {
    signal.read();
    auto ch = csp::Channel<int>::host(address);
    hosted_.push_back(csp::hosted_address(ch));
    return ch.reader().read();
  };
  auto [unused, got] = csp::Parallel(csp::os_process(client, address, ready.writer()),
                                     csp::process(hoster, address, ready.reader()));
  (void)unused;
  EXPECT_EQ(got, 42);
}

TEST_P(Address, ConnectGivesUpWithAClearError) {
  const std::string address = GetParam() == Scheme::tcp ? "tcp://127.0.0.1:1/nobody" : fresh_address(GetParam());
  const auto t0 = std::chrono::steady_clock::now();
  try {
    csp::Channel<int>::connect(address, 100ms);
    FAIL() << "connected to nothing";
  } catch (const csp::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to " + address), std::string::npos) << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
}

TEST_P(Address, TypeMismatchFailsAtConnect) {
  auto [jobs, address] = host<int>();
  try {
    csp::Channel<std::string>::connect(address);
    FAIL() << "connected a string channel to an int channel";
  } catch (const csp::TransportError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("element type mismatch"), std::string::npos) << what;
    EXPECT_NE(what.find("i32"), std::string::npos) << what;
    EXPECT_NE(what.find("string"), std::string::npos) << what;
    EXPECT_NE(what.find(address.substr(0, address.find('/', 8))), std::string::npos) << what;
  }
  // The host is unharmed.
  auto ok = csp::Channel<int>::connect(address);
  csp::Parallel(csp::process([](csp::Writer<int> w) { w.write(1); }, ok.writer()),
                csp::process([](csp::Reader<int> r) { EXPECT_EQ(r.read(), 1); }, jobs.reader()));
}

TEST_P(Address, HostedChannelBuffers) {
  auto [q, address] = host<int>("?buffer=4");
  auto client = [](std::string address) {
    auto w = csp::Channel<int>::connect(address).writer();
    int n = 0;
    for (int i = 0; i < 5; ++i) n += w.try_write(i) ? 1 : 0;
    return n;
  };
  auto [n] = csp::Parallel(csp::os_process(client, address));
  EXPECT_EQ(n, 4);
  auto r = q.reader();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.read(), i);
}

// A client killed while it holds a writer poisons the host's channel, naming it.
TEST_P(Address, KilledClientPoisonsWithItsName) {
  auto [jobs, address] = host<int>();
  csp::Channel<int> pid_ch;
  auto client = [](std::string address, csp::Writer<int> report) {
    auto w = csp::Channel<int>::connect(address).writer();
    w.write(::getpid());
    report.write(0);
    for (;;) csp::sleep_for(1h);
  };
  auto host_side = [](csp::Reader<int> in, csp::Reader<int> report) {
    const int pid = in.read();
    report.read();
    ::kill(pid, SIGKILL);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      in.read();
      ADD_FAILURE() << "read after the only writer died";
    } catch (const csp::ChannelPoisoned& e) {
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    }
  };
  EXPECT_THROW(csp::Parallel(csp::os_process(client, address, pid_ch.writer()),
                             csp::process(host_side, jobs.reader(), pid_ch.reader())),
               csp::ProcessFailed);
}

// The host dies: a client's blocked read wakes with ChannelPoisoned naming the address.
TEST_P(Address, LostHostPoisonsTheClient) {
  const std::string address = fresh_address(GetParam());
  csp::Channel<std::string> bound_ch, result_ch;
  csp::Channel<int> pid_ch, ready_ch;
  auto host_proc = [](std::string address, csp::Writer<int> pid_out, csp::Writer<std::string> bound_out) {
    auto ch = csp::Channel<int>::host(address);
    pid_out.write(::getpid());
    bound_out.write(csp::hosted_address(ch));
    ch.reader().read();  // until killed
  };
  auto client = [](csp::Reader<std::string> bound, csp::Writer<int> ready, csp::Writer<std::string> result) {
    auto r = csp::Channel<int>::connect(bound.read()).reader();
    ready.write(0);
    try {
      r.read();
      result.write("no poison");
    } catch (const csp::ChannelPoisoned& e) {
      result.write(e.what());
    }
  };
  std::string what;
  auto killer = [&what](csp::Reader<int> pid_in, csp::Reader<int> ready, csp::Reader<std::string> result) {
    const int pid = pid_in.read();
    ready.read();
    ::kill(pid, SIGKILL);
    what = result.read();
  };
  EXPECT_THROW(csp::Parallel(csp::os_process(host_proc, address, pid_ch.writer(), bound_ch.writer()),
                             csp::os_process(client, bound_ch.reader(), ready_ch.writer(), result_ch.writer()),
                             csp::process(killer, pid_ch.reader(), ready_ch.reader(), result_ch.reader())),
               csp::ProcessFailed);
  // A killed host cannot remove its socket file or FIFO.
  auto a = csp::transport_detail::parse_address(address);
  if (GetParam() == Scheme::unix_socket || GetParam() == Scheme::pipe) ::unlink(a.path.c_str());
  EXPECT_NE(what.find("poisoned"), std::string::npos) << what;
  EXPECT_NE(what.find("lost its home"), std::string::npos) << what;
  if (GetParam() != Scheme::tcp) {
    EXPECT_NE(what.find(address.substr(0, 12)), std::string::npos) << what;
  }
}

TEST_F(Address, UnhostRemovesTheFileAndRefusesNewClients) {
  const std::string address = fresh_address(Scheme::unix_socket, "one");
  auto ch = csp::Channel<int>::host(address);
  const std::string path = address.substr(7, address.rfind('/') - 7);
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(csp::unhost(address));
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  EXPECT_THROW(csp::Channel<int>::connect(address, 50ms), csp::TransportError);
  EXPECT_FALSE(csp::unhost(address));
}

TEST_F(Address, SeveralChannelsShareOnePort) {
  auto a = csp::Channel<int>::host("tcp://127.0.0.1:0/a");
  const std::string bound_a = csp::hosted_address(a);
  const std::string port_base = bound_a.substr(0, bound_a.rfind('/'));
  auto b = csp::Channel<std::string>::host(port_base + "/b");
  hosted_ = {bound_a, port_base + "/b"};
  auto client = [](std::string base) {
    csp::Channel<int>::connect(base + "/a").writer().write(7);
    csp::Channel<std::string>::connect(base + "/b").writer().write("seven");
    try {
      csp::Channel<int>::connect(base + "/c", 1s);
    } catch (const csp::TransportError& e) {
      return std::string(e.what());
    }
    return std::string("connected to c");
  };
  auto reader = [](csp::Reader<int> ra, csp::Reader<std::string> rb) {
    EXPECT_EQ(ra.read(), 7);
    EXPECT_EQ(rb.read(), "seven");
  };
  auto [msg, unused] = csp::Parallel(csp::os_process(client, port_base), csp::process(reader, a.reader(), b.reader()));
  (void)unused;
  EXPECT_NE(msg.find("no channel 'c' is hosted"), std::string::npos) << msg;
}

int raw_tcp_connect(const std::string& bound) {
  // bound: tcp://127.0.0.1:PORT/name
  const auto colon = bound.rfind(':');
  const int port = std::stoi(bound.substr(colon + 1, bound.find('/', colon) - colon - 1));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

/// Reads until EOF (the host drops the connection); returns the bytes.
std::string read_to_eof(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r <= 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  ::close(fd);
  return out;
}

TEST_F(Address, GarbageIsATransportErrorAndTheHostServesOthers) {
  ErrorLog log;
  auto jobs = csp::Channel<int>::host("tcp://127.0.0.1:0/jobs");
  const std::string address = csp::hosted_address(jobs);
  hosted_ = {address};
  auto client = [](std::string address, int v) { csp::Channel<int>::connect(address).writer().write(v); };
  auto reader = [](csp::Reader<int> in) { return in.read(); };

  auto [u1, first] = csp::Parallel(csp::os_process(client, address, 1), csp::process(reader, jobs.reader()));
  (void)u1;
  EXPECT_EQ(first, 1);

  // Garbage: the host answers HELLO_NAK with the reason and drops us.
  int fd = raw_tcp_connect(address);
  const char garbage[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  ASSERT_EQ(::write(fd, garbage, sizeof garbage - 1), static_cast<ssize_t>(sizeof garbage - 1));
  std::string reply = read_to_eof(fd);
  EXPECT_NE(reply.find("bad frame magic"), std::string::npos);

  // A valid handshake, then a truncated frame.
  csp::ByteWriter out;
  {
    auto hello = csp::detail::make_hello<int>("jobs");
    const std::size_t start = csp::detail::begin_frame(out, csp::detail::FrameKind::hello, 0, 1);
    csp::detail::encode_hello(out, hello);
    csp::detail::end_frame(out, start);
    const std::size_t w = csp::detail::begin_frame(out, csp::detail::FrameKind::write, 0, 2);
    out.put_u64(~0ull);
    out.put_u32(5);
    csp::detail::end_frame(out, w);
  }
  fd = raw_tcp_connect(address);
  ASSERT_EQ(::write(fd, out.data(), out.size() - 2), static_cast<ssize_t>(out.size() - 2));  // 2 bytes short
  ::shutdown(fd, SHUT_WR);
  read_to_eof(fd);

  // Still serving.
  auto [u2, second] = csp::Parallel(csp::os_process(client, address, 2), csp::process(reader, jobs.reader()));
  (void)u2;
  EXPECT_EQ(second, 2);

  auto errors = log.take();
  bool magic = false, truncated = false;
  for (const auto& m : errors) {
    magic = magic || m.find("bad frame magic") != std::string::npos;
    truncated = truncated || m.find("ended inside a frame") != std::string::npos;
  }
  EXPECT_TRUE(magic) << ::testing::PrintToString(errors);
  EXPECT_TRUE(truncated) << ::testing::PrintToString(errors);
}

// A value over the frame limit of an address connection is refused before
// anything is sent: the writer keeps it and the connection stays usable.
TEST_F(Address, ValueOverTheFrameLimitIsRefusedAndKept) {
  ::setenv("CSP_MAX_FRAME_BYTES", "100000", 1);
  auto host = csp::Channel<std::string>::host("tcp://127.0.0.1:0/big");
  const std::string address = csp::hosted_address(host);
  hosted_ = {address};
  auto client = [](std::string address) {
    auto w = csp::Channel<std::string>::connect(address).writer();
    std::string big(200000, 'x');
    std::string small(1000, 'y');
    int refused = 0;
    try {
      w.write(big);
    } catch (const csp::TransportError& e) {
      refused = std::string(e.what()).find("limit") != std::string::npos ? 1 : 2;
    }
    w.write(small);
    return refused;
  };
  auto [refused, got] = csp::Parallel(csp::os_process(client, address),
                                      csp::process([](csp::Reader<std::string> r) { return r.read(); }, host.reader()));
  ::unsetenv("CSP_MAX_FRAME_BYTES");
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(got, std::string(1000, 'y'));
}

TEST_F(Address, BadAddressesAreRefused) {
  for (const char* bad : {"tcp://127.0.0.1/jobs", "unix://relative/x", "pipe://relative", "ftp://x/y", "jobs",
                          "tcp://127.0.0.1:99999/x", "tcp://127.0.0.1:7000/x?size=3"}) {
    EXPECT_THROW(csp::Channel<int>::host(bad), csp::TransportError) << bad;
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, Address,
                         ::testing::Values(Scheme::tcp, Scheme::unix_socket, Scheme::pipe, Scheme::shm), scheme_name);

}  // namespace
