// Tests of csp/transport/shm.hpp: the shared-memory byte stream across a
// fork (threads and coroutines on either side), streams larger than the
// ring, peer death, close, deadlines, and shm:// rendezvous.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <csp/error.hpp>
#include <csp/parallel.hpp>
#include <csp/process.hpp>
#include <csp/runtime.hpp>
#include <csp/transport/shm.hpp>

using namespace std::chrono_literals;
using csp::transport_detail::ByteStream;
using csp::transport_detail::ShmOptions;
using Clock = std::chrono::steady_clock;

// Forked children build their own runtime (threads); TSan would otherwise
// refuse that after a multi-threaded fork.
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }

namespace {

// ---------------------------------------------------------------- helpers

// Runs body() in a forked child that exits with its result (3 if it throws).
// alarm() only guards against a hang.
pid_t fork_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    csp::detail::reset_after_fork();
    int rc = 3;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// Waits for the child; returns its exit status, or 128 + signal.
int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool read_exact(ByteStream& s, void* data, std::size_t n) {
  auto* p = static_cast<unsigned char*>(data);
  while (n != 0) {
    std::optional<std::size_t> r = s.read_some(p, n, csp::detail::forever);
    if (!r || *r == 0) return false;
    p += *r;
    n -= *r;
  }
  return true;
}

void send_u64(ByteStream& s, std::uint64_t v) { s.write_all(&v, sizeof v); }
std::uint64_t recv_u64(ByteStream& s) {
  std::uint64_t v = 0;
  if (!read_exact(s, &v, sizeof v)) throw std::runtime_error("unexpected end of stream");
  return v;
}

// Byte `pos` of the test stream: any chunking of it can be checked.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
void fill(unsigned char* p, std::uint64_t pos, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k, ++pos) p[k] = static_cast<unsigned char>(mix(pos >> 3) >> ((pos & 7) * 8));
}
std::uint64_t checksum(std::uint64_t sum, const unsigned char* p, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k) sum = (sum ^ p[k]) * 0x100000001b3ull;  // FNV-1a
  return sum;
}
constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ull;

// Entries of ours in /dev/shm, and fds of this process naming a segment.
int shm_leftovers() {
  int found = 0;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (std::strstr(e->d_name, "csp-shm")) ++found;
    ::closedir(d);
  }
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      char target[256] = {};
      std::string link = std::string("/proc/self/fd/") + e->d_name;
      if (::readlink(link.c_str(), target, sizeof target - 1) > 0 && std::strstr(target, "csp-shm")) ++found;
    }
    ::closedir(d);
  }
  return found;
}

std::string unique_name(const char* what) {
  std::random_device rd;
  return std::string("test-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
}

// The echo side of a ping-pong: answers each v with v + 1 until EOF.
int echo(ByteStream& s) {
  std::uint64_t v = 0;
  while (read_exact(s, &v, sizeof v)) send_u64(s, v + 1);
  return 0;
}

ShmOptions with_ring(std::size_t bytes) {
  ShmOptions o;
  o.ring_bytes = bytes;
  return o;
}
ShmOptions parking_only() {  // every wait parks on the eventfd
  ShmOptions o;
  o.max_spin = std::chrono::nanoseconds(0);
  return o;
}
ShmOptions without_membarrier(ShmOptions o = {}) {  // seq_cst on both sides
  o.use_membarrier = false;
  return o;
}
ShmOptions with_membarrier(ShmOptions o = {}) {  // the parking side runs membarrier (where the kernel has it)
  o.use_membarrier = true;
  return o;
}

void ping_pong(ByteStream& s, int rounds) {
  for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(rounds); ++i) {
    send_u64(s, i);
    ASSERT_EQ(recv_u64(s), i + 1);
  }
}

// ---------------------------------------------------------------- fork link

TEST(ShmStream, ForkPingPongFromMainThread) {
  auto link = csp::transport_detail::make_shm_fork_link();
  pid_t pid = fork_child([&] { return echo(*link->child_end()); });
  auto s = link->parent_end();
  link.reset();
  EXPECT_NE(s->describe().find("shm:/csp-shm-"), std::string::npos) << s->describe();
  ping_pong(*s, 20000);
  s->close();
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmStream, ForkPingPongFromPlainThread) {
  auto link = csp::transport_detail::make_shm_fork_link(with_ring(4096));
  pid_t pid = fork_child([&] { return echo(*link->child_end()); });
  auto s = link->parent_end();
  std::thread t([&] { ping_pong(*s, 20000); });
  t.join();
  s.reset();  // the destructor closes
  EXPECT_EQ(reap(pid), 0);
}

// A forked child echoes `rounds` ping-pong messages over a link with `options`.
void fork_ping_pong(const ShmOptions& options, int rounds) {
  auto link = csp::transport_detail::make_shm_fork_link(options);
  pid_t pid = fork_child([&] { return echo(*link->child_end()); });
  auto s = link->parent_end();
  ping_pong(*s, rounds);
  s->close();
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmStream, ForkPingPongWithParkingOnly) {
  fork_ping_pong(parking_only(), 2000);  // every wait parks on the eventfd, on both sides
}

// Both sides park on every wait and the ring holds one page, so nearly every
// write and read goes through the sleeping-flag handshake: a lost wake-up
// hangs here (the child's alarm ends it).
void stream_through_parking(const ShmOptions& options) {
  constexpr std::uint64_t kTotal = 20'000'000;
  auto link = csp::transport_detail::make_shm_fork_link(options);
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    std::vector<unsigned char> buf(10000);
    std::uint64_t got = 0, sum = kFnvBasis;
    while (got < kTotal) {
      auto r = s->read_some(buf.data(), std::min<std::uint64_t>(buf.size(), kTotal - got), csp::detail::forever);
      if (!r || *r == 0) return 4;
      sum = checksum(sum, buf.data(), *r);
      got += *r;
    }
    send_u64(*s, sum);
    return 0;
  });
  auto s = link->parent_end();
  std::vector<unsigned char> buf(7000);
  std::uint64_t sum = kFnvBasis;
  for (std::uint64_t pos = 0; pos < kTotal;) {
    std::size_t n = std::min<std::uint64_t>(1 + pos % buf.size(), kTotal - pos);
    fill(buf.data(), pos, n);
    sum = checksum(sum, buf.data(), n);
    s->write_all(buf.data(), n);
    pos += n;
  }
  EXPECT_EQ(recv_u64(*s), sum);
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmStream, StreamThroughParkingWithMembarrier) {
  ShmOptions o = with_membarrier(parking_only());
  o.ring_bytes = 4096;
  stream_through_parking(o);
}

TEST(ShmStream, StreamThroughParkingWithoutMembarrier) {
  ShmOptions o = without_membarrier(parking_only());
  o.ring_bytes = 4096;
  stream_through_parking(o);
}

TEST(ShmStream, ForkPingPongWithoutMembarrier) { fork_ping_pong(without_membarrier(), 20000); }

TEST(ShmStream, ForkPingPongWithMembarrier) { fork_ping_pong(with_membarrier(), 20000); }

// The writer streams 100 MB in writes of many sizes (up to 3x the ring);
// the reader reads with many buffer sizes, checks every byte and answers
// with the byte count and a checksum.
void stream_100mb(bool coroutines) {
  constexpr std::uint64_t kTotal = 100'000'000;
  auto link = csp::transport_detail::make_shm_fork_link();
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    int rc = 0;
    auto body = [&] {
      std::vector<unsigned char> buf(5 << 20), expect(buf.size());
      const std::size_t sizes[] = {1, 7, 4096, 65536, 1 << 20, 5 << 20, 100};
      std::uint64_t pos = 0, sum = kFnvBasis;
      for (std::size_t k = 0; pos < kTotal; ++k) {
        std::size_t want = std::min<std::uint64_t>(sizes[k % 7], kTotal - pos);
        auto r = s->read_some(buf.data(), want, csp::detail::forever);
        if (!r || *r == 0) {
          rc = 4;
          return;
        }
        fill(expect.data(), pos, *r);
        if (std::memcmp(buf.data(), expect.data(), *r) != 0) {
          std::fprintf(stderr, "mismatch near byte %llu\n", static_cast<unsigned long long>(pos));
          rc = 5;
          return;
        }
        sum = checksum(sum, buf.data(), *r);
        pos += *r;
      }
      send_u64(*s, pos);
      send_u64(*s, sum);
    };
    if (coroutines)
      csp::Parallel(csp::process(body));
    else
      body();
    return rc;
  });
  auto s = link->parent_end();
  std::uint64_t sum = kFnvBasis;
  auto body = [&] {
    std::vector<unsigned char> buf(3 << 20);
    const std::size_t sizes[] = {64, 3 << 20, 1, 65536, 1000, (1 << 20) + 1, 8};
    for (std::uint64_t pos = 0, k = 0; pos < kTotal; ++k) {
      std::size_t n = std::min<std::uint64_t>(sizes[k % 7], kTotal - pos);
      fill(buf.data(), pos, n);
      sum = checksum(sum, buf.data(), n);
      s->write_all(buf.data(), n);
      pos += n;
    }
  };
  if (coroutines)
    csp::Parallel(csp::process(body));
  else
    body();
  EXPECT_EQ(recv_u64(*s), kTotal);
  EXPECT_EQ(recv_u64(*s), sum);
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmStream, Stream100MBWithChecksumThreads) { stream_100mb(false); }
TEST(ShmStream, Stream100MBWithChecksumCoroutines) { stream_100mb(true); }

TEST(ShmStream, MessagesLargerThanTheRing) {
  const ShmOptions small = with_ring(64 * 1024);
  auto link = csp::transport_detail::make_shm_fork_link(small);
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    std::vector<unsigned char> msg;
    for (;;) {  // read a whole message, then echo it
      std::uint64_t len = 0;
      if (!read_exact(*s, &len, sizeof len)) return 0;
      msg.resize(len);
      if (!read_exact(*s, msg.data(), len)) return 4;
      send_u64(*s, len);
      s->write_all(msg.data(), len);
    }
  });
  auto s = link->parent_end();
  const std::size_t sizes[] = {1, 65535, 65536, 65537, (1 << 20) + 3, 5 << 20};
  std::uint64_t pos = 0;
  for (std::size_t len : sizes) {
    std::vector<unsigned char> out(len), back(len);
    fill(out.data(), pos, len);
    pos += len;
    send_u64(*s, len);
    s->write_all(out.data(), len);
    ASSERT_EQ(recv_u64(*s), len);
    ASSERT_TRUE(read_exact(*s, back.data(), len));
    ASSERT_EQ(out, back) << "message of " << len << " bytes";
  }
  s->close();
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmStream, PeerExitWithoutCloseIsEndOfStream) {
  auto link = csp::transport_detail::make_shm_fork_link();
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    s->write_all("bye", 3);
    ::_exit(0);  // no close, no destructor: only the kernel cleans up
    return 0;
  });
  auto s = link->parent_end();
  char buf[8] = {};
  ASSERT_TRUE(read_exact(*s, buf, 3));
  EXPECT_STREQ(buf, "bye");
  EXPECT_EQ(s->read_some(buf, sizeof buf, csp::detail::forever), std::optional<std::size_t>(0));
  EXPECT_THROW(s->write_all(buf, 1), csp::TransportError);
  EXPECT_EQ(reap(pid), 0);
}

// ---------------------------------------------------------------- peer death

// The child announces itself and then blocks forever; another thread kills
// it with SIGKILL while `blocked` (reading or writing) waits. Returns the
// time from the kill to the wake-up.
template <class Blocked>
Clock::duration kill_while_blocked(const ShmOptions& options, Blocked blocked) {
  auto link = csp::transport_detail::make_shm_fork_link(options);
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    s->write_all("r", 1);
    for (;;) ::pause();
    return 0;
  });
  auto s = link->parent_end();
  char c = 0;
  EXPECT_TRUE(read_exact(*s, &c, 1));
  std::atomic<Clock::rep> killed_at{0};
  std::thread killer([&] {
    // Not synchronisation: the wait below is most likely parked by now, and
    // the result must be the same if it is not.
    std::this_thread::sleep_for(100ms);
    killed_at = Clock::now().time_since_epoch().count();
    ::kill(pid, SIGKILL);
  });
  blocked(*s);
  const auto woke = Clock::now();
  killer.join();
  EXPECT_EQ(reap(pid), 128 + SIGKILL);
  EXPECT_EQ(shm_leftovers(), 0);
  return woke - Clock::time_point(Clock::duration(killed_at.load()));
}

void expect_reader_woken(ByteStream& s) {
  char buf[16];
  EXPECT_EQ(s.read_some(buf, sizeof buf, csp::detail::forever), std::optional<std::size_t>(0));
}

void expect_writer_throws(ByteStream& s) {
  std::vector<unsigned char> big(4 << 20, 0x5a);  // 64x the ring: blocks
  try {
    s.write_all(big.data(), big.size());
    ADD_FAILURE() << "write_all to a dead peer returned";
  } catch (const csp::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("shm:/csp-shm-"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gone"), std::string::npos) << e.what();
  }
}

TEST(ShmStream, PeerSigkillWakesBlockedReaderThread) {
  auto took = kill_while_blocked({}, expect_reader_woken);
  EXPECT_LT(took, 1s);
}

TEST(ShmStream, PeerSigkillWakesBlockedWriterThread) {
  auto took = kill_while_blocked(with_ring(64 * 1024), expect_writer_throws);
  EXPECT_LT(took, 1s);
}

TEST(ShmStream, PeerSigkillWakesBlockedReaderCoroutine) {
  auto took = kill_while_blocked({}, [](ByteStream& s) {
    csp::Parallel(csp::process([&] { expect_reader_woken(s); }));
  });
  EXPECT_LT(took, 1s);
}

TEST(ShmStream, PeerSigkillWakesBlockedWriterCoroutine) {
  auto took = kill_while_blocked(with_ring(64 * 1024), [](ByteStream& s) {
    csp::Parallel(csp::process([&] { expect_writer_throws(s); }));
  });
  EXPECT_LT(took, 1s);
}

// ---------------------------------------------------------------- coroutines

TEST(ShmStream, CoroutinePingPongInsideParallel) {
  auto link = csp::transport_detail::make_shm_fork_link();
  pid_t pid = fork_child([&] {
    auto s = link->child_end();
    csp::Parallel(csp::process([&] { echo(*s); }));
    return 0;
  });
  auto s = link->parent_end();
  std::atomic<bool> done{false};
  std::atomic<long> other_ran{0};
  csp::Parallel(csp::process([&] {
                  ping_pong(*s, 20000);
                  done = true;
                }),
                csp::process([&] {
                  while (!done) {
                    ++other_ran;
                    csp::sleep_for(100us);
                  }
                }));
  EXPECT_GT(other_ran.load(), 0);
  s->close();
  EXPECT_EQ(reap(pid), 0);
}

// On a single worker, a process parked on the stream must not block the
// others: the child's echo answers only after a delay long enough to park,
// and a sibling process counts while the reader waits. Runs in a child so
// it can configure its own one-worker runtime.
TEST(ShmStream, ParkedCoroutineDoesNotBlockItsWorker) {
  auto link = csp::transport_detail::make_shm_fork_link();
  pid_t echo_pid = fork_child([&] {
    auto s = link->child_end();
    std::uint64_t v = 0;
    while (read_exact(*s, &v, sizeof v)) {
      std::this_thread::sleep_for(2ms);  // long enough that the reader parks
      send_u64(*s, v + 1);
    }
    return 0;
  });
  pid_t main_pid = fork_child([&] {
    csp::Config one_worker;
    one_worker.workers = 1;
    csp::configure(one_worker);
    auto s = link->parent_end();
    std::atomic<bool> done{false};
    long ticks = 0;
    bool ok = true;
    csp::Parallel(csp::process([&] {
                    for (std::uint64_t i = 0; i < 20; ++i) {
                      send_u64(*s, i);
                      ok = ok && recv_u64(*s) == i + 1;
                    }
                    done = true;
                  }),
                  csp::process([&] {
                    while (!done) {
                      ++ticks;
                      csp::yield();
                    }
                  }));
    if (!ok) return 6;
    if (ticks < 20) {
      std::fprintf(stderr, "sibling ran only %ld times\n", ticks);
      return 7;
    }
    return 0;
  });
  link.reset();
  EXPECT_EQ(reap(main_pid), 0);
  EXPECT_EQ(reap(echo_pid), 0);
}

// ---------------------------------------------------------------- in-process pair

TEST(ShmStream, CloseIsEndOfStreamAfterTheDataAndRefusesWrites) {
  auto [a, b] = csp::transport_detail::make_shm_pair();
  a->write_all("abc", 3);
  a->close();
  a->close();  // idempotent
  char buf[8] = {};
  ASSERT_TRUE(read_exact(*b, buf, 3));
  EXPECT_STREQ(buf, "abc");
  EXPECT_EQ(b->read_some(buf, sizeof buf, csp::detail::forever), std::optional<std::size_t>(0));
  EXPECT_THROW(a->write_all("x", 1), csp::TransportError);
  try {
    b->write_all("x", 1);
    ADD_FAILURE() << "write to a closed peer returned";
  } catch (const csp::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a->read_some(buf, sizeof buf, csp::detail::forever), std::optional<std::size_t>(0));
}

TEST(ShmStream, ReadWithDeadlineTimesOut) {
  auto [a, b] = csp::transport_detail::make_shm_pair();
  char buf[8];
  const auto t0 = Clock::now();
  EXPECT_EQ(b->read_some(buf, sizeof buf, t0 + 20ms), std::nullopt);
  EXPECT_GE(Clock::now() - t0, 20ms);
  EXPECT_EQ(b->read_some(buf, sizeof buf, Clock::now()), std::nullopt);  // a poll
  a->write_all("z", 1);
  EXPECT_EQ(b->read_some(buf, sizeof buf, Clock::now()), std::optional<std::size_t>(1));
  // From a coroutine too.
  csp::Parallel(csp::process([&] {
    const auto t1 = Clock::now();
    EXPECT_EQ(b->read_some(buf, sizeof buf, t1 + 20ms), std::nullopt);
    EXPECT_GE(Clock::now() - t1, 20ms);
  }));
}

TEST(ShmStream, CloseWakesThisSidesBlockedReader) {
  auto [a, b] = csp::transport_detail::make_shm_pair(parking_only());
  std::thread reader([&b = b] {
    char buf[8];
    EXPECT_EQ(b->read_some(buf, sizeof buf, csp::detail::forever), std::optional<std::size_t>(0));
  });
  std::this_thread::sleep_for(20ms);  // not synchronisation: most likely parked by now
  b->close();
  reader.join();
}

TEST(ShmStream, GatheredWriteArrivesInOrderAcrossTheRingEnd) {
  auto [a, b] = csp::transport_detail::make_shm_pair(with_ring(4096));
  std::vector<unsigned char> big(10000), got(10000 + 3000);
  fill(big.data(), 0, big.size());
  std::thread reader([&b = b, &got] { EXPECT_TRUE(read_exact(*b, got.data(), got.size())); });
  // Parts larger and smaller than the ring, wrapping it several times.
  const csp::transport_detail::ConstBuffer parts[] = {
      {big.data(), 3000}, {big.data() + 3000, 7}, {big.data() + 3007, 6993}, {big.data(), 3000}};
  a->write_all_v(parts, 4);
  reader.join();
  EXPECT_EQ(0, std::memcmp(got.data(), big.data(), 10000));
  EXPECT_EQ(0, std::memcmp(got.data() + 10000, big.data(), 3000));
}

TEST(ShmStream, FdsListsEveryDescriptorTheStreamKeeps) {
  auto [a, b] = csp::transport_detail::make_shm_pair();
  std::vector<int> fds = a->fds();
  EXPECT_EQ(fds.size(), 5u);  // four eventfds and the lifeline (no epoll set yet)
  for (int fd : fds) EXPECT_GE(::fcntl(fd, F_GETFD), 0) << fd;
}

// Both ends in one process, on two threads and on coroutines: the ring's
// memory ordering is visible to ThreadSanitizer here.
TEST(ShmStream, PairStreamsBetweenThreadsAndCoroutines) {
  for (bool coroutines : {false, true}) {
    auto [a, b] = csp::transport_detail::make_shm_pair(with_ring(8192));
    constexpr std::uint64_t kTotal = 8'000'000;
    std::uint64_t read_sum = kFnvBasis, write_sum = kFnvBasis, got = 0;
    auto writer = [&a = a, &write_sum] {
      std::vector<unsigned char> buf(20000);
      for (std::uint64_t pos = 0, k = 0; pos < kTotal; ++k) {
        std::size_t n = std::min<std::uint64_t>(1 + (k * 7919) % buf.size(), kTotal - pos);
        fill(buf.data(), pos, n);
        write_sum = checksum(write_sum, buf.data(), n);
        a->write_all(buf.data(), n);
        pos += n;
      }
      a->close();
    };
    auto reader = [&b = b, &read_sum, &got] {
      std::vector<unsigned char> buf(3000);
      for (;;) {
        auto r = b->read_some(buf.data(), buf.size(), csp::detail::forever);
        if (!r || *r == 0) break;
        read_sum = checksum(read_sum, buf.data(), *r);
        got += *r;
      }
    };
    if (coroutines) {
      csp::Parallel(csp::process(writer), csp::process(reader));
    } else {
      std::thread w(writer), r(reader);
      w.join();
      r.join();
    }
    EXPECT_EQ(got, kTotal);
    EXPECT_EQ(read_sum, write_sum);
  }
}

// ---------------------------------------------------------------- shm://

TEST(ShmAddress, HostAndConnectAcrossProcesses) {
  const std::string name = unique_name("pp");
  csp::transport_detail::ShmListener listener(name);
  EXPECT_EQ(listener.describe(), "shm://" + name);
  pid_t pid = fork_child([&] {
    auto s = csp::transport_detail::shm_connect(name, Clock::now() + 10s);
    if (!s) return 8;
    if (s->describe().find("shm://" + name + " (segment csp-shm-") != 0) return 9;
    return echo(*s);
  });
  // The host side runs as a coroutine: accept parks in the reactor.
  csp::Parallel(csp::process([&] {
    auto s = listener.accept(Clock::now() + 10s);
    ASSERT_NE(s, nullptr);
    ping_pong(*s, 5000);
    s->close();
  }));
  EXPECT_EQ(reap(pid), 0);
  EXPECT_EQ(shm_leftovers(), 0);
}

// The host would use membarrier and parks at once; the connecting side
// (defaults) keeps seq_cst: the two must agree on seq_cst and lose no wake-up.
TEST(ShmAddress, SidesThatDisagreeOnMembarrierStillWork) {
  const std::string name = unique_name("mixed");
  ShmOptions host_options = with_membarrier(parking_only());
  host_options.ring_bytes = 4096;
  csp::transport_detail::ShmListener listener(name, host_options);
  pid_t pid = fork_child([&] {
    auto s = csp::transport_detail::shm_connect(name, Clock::now() + 10s);
    if (!s) return 8;
    // Echo in blocks: exercises both rings with a full ring either way.
    std::vector<unsigned char> buf(3000);
    for (;;) {
      auto r = s->read_some(buf.data(), buf.size(), csp::detail::forever);
      if (!r || *r == 0) return 0;
      s->write_all(buf.data(), *r);
    }
  });
  auto s = listener.accept(Clock::now() + 10s);
  ASSERT_NE(s, nullptr);
  for (std::uint64_t i = 0; i < 2000; ++i) {
    send_u64(*s, i);
    ASSERT_EQ(recv_u64(*s), i);
  }
  constexpr std::size_t kTotal = 4'000'000;
  std::vector<unsigned char> out(kTotal), back(kTotal);
  fill(out.data(), 0, kTotal);
  std::thread reader([&] { EXPECT_TRUE(read_exact(*s, back.data(), kTotal)); });
  s->write_all(out.data(), kTotal);
  reader.join();
  EXPECT_EQ(out, back);
  s->close();
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmAddress, ConnectBeforeTheHostExistsWaitsForIt) {
  const std::string name = unique_name("late");
  pid_t pid = fork_child([&] {
    auto s = csp::transport_detail::shm_connect(name, Clock::now() + 20s);
    if (!s) return 8;
    return echo(*s);
  });
  std::this_thread::sleep_for(30ms);  // not synchronisation: the child most likely retries by now
  csp::transport_detail::ShmListener listener(name);
  auto s = listener.accept(Clock::now() + 20s);
  ASSERT_NE(s, nullptr);
  ping_pong(*s, 100);
  s.reset();
  EXPECT_EQ(reap(pid), 0);
}

TEST(ShmAddress, SecondListenerOnTheSameNameThrows) {
  const std::string name = unique_name("dup");
  csp::transport_detail::ShmListener first(name);
  try {
    csp::transport_detail::ShmListener second(name);
    ADD_FAILURE() << "a second listener was created";
  } catch (const csp::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("shm://" + name), std::string::npos) << e.what();
  }
  EXPECT_THROW(csp::transport_detail::ShmListener(""), csp::TransportError);
  EXPECT_THROW(csp::transport_detail::ShmListener(std::string(200, 'x')), csp::TransportError);
}

TEST(ShmAddress, AcceptAndConnectTimeOut) {
  const std::string name = unique_name("none");
  auto t0 = Clock::now();
  EXPECT_EQ(csp::transport_detail::shm_connect(name, t0 + 30ms), nullptr);
  EXPECT_GE(Clock::now() - t0, 30ms);
  csp::transport_detail::ShmListener listener(name);
  t0 = Clock::now();
  EXPECT_EQ(listener.accept(t0 + 30ms), nullptr);
  EXPECT_GE(Clock::now() - t0, 30ms);
}

TEST(ShmAddress, CloseWakesABlockedAcceptAndRefusesConnections) {
  const std::string name = unique_name("close");
  std::unique_ptr<csp::transport_detail::Listener> listener = csp::transport_detail::shm_listen(name);
  EXPECT_EQ(listener->describe(), "shm://" + name);
  EXPECT_EQ(listener->fds().size(), 1u);
  std::atomic<bool> returned{false};
  std::thread acceptor([&] {
    EXPECT_EQ(listener->accept(csp::detail::forever), nullptr);
    returned = true;
  });
  std::this_thread::sleep_for(20ms);  // not synchronisation: most likely parked by now
  listener->close();
  acceptor.join();
  EXPECT_TRUE(returned);
  EXPECT_EQ(csp::transport_detail::shm_connect(name, Clock::now() + 20ms), nullptr);
  // From a coroutine too, and close() is idempotent.
  const std::string name2 = unique_name("close2");
  auto listener2 = csp::transport_detail::shm_listen(name2);
  csp::Parallel(csp::process([&] { EXPECT_EQ(listener2->accept(csp::detail::forever), nullptr); }),
                csp::process([&] {
                  csp::sleep_for(20ms);
                  listener2->close();
                  listener2->close();
                }));
}

TEST(ShmAddress, ConnectToSomethingElseIsATransportError) {
  // A listener at the rendezvous address that is not csp answers garbage.
  const std::string name = unique_name("fake");
  int l = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  ASSERT_GE(l, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = std::string("csp-shm:") + name;
  std::memcpy(addr.sun_path + 1, path.data(), path.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + path.size());
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(l, 4), 0);
  std::thread fake([l] {
    int c = ::accept(l, nullptr, nullptr);
    char junk[24] = "definitely not csp";
    ::send(c, junk, sizeof junk, 0);
    char b;
    ::recv(c, &b, 1, 0);  // until the client gives up
    ::close(c);
  });
  try {
    auto s = csp::transport_detail::shm_connect(name, Clock::now() + 10s);
    ADD_FAILURE() << "connected to a non-csp host";
  } catch (const csp::TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("shm://" + name), std::string::npos) << e.what();
  }
  fake.join();
  ::close(l);
}

TEST(ShmStream, NothingLeftInDevShmOrOpen) { EXPECT_EQ(shm_leftovers(), 0); }

}  // namespace
