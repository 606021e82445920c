// FdStream's spin before it parks (csp/transport/fd_stream.hpp), once per
// fd link kind (pipe, unix, tcp), between this process and a forked child:
// a read or write by a thread that spins still honours its deadline and
// sees the peer close or die; a coroutine's wait (which parks at once)
// honours its deadline and lets its worker's other processes run.
//
// Each test sets a spin bound far longer than the test may take (kLongSpin),
// so whatever it checks happens during the spin: a spin that missed it
// would only end at the bound, which the elapsed-time checks (against half
// the bound) turn into a failure rather than a pass after the park. (On
// contended CPUs a spin parks early; the checks hold then as well.)
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <csp/transport/fd_stream.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;
using csp::transport_detail::ByteStream;
using csp::transport_detail::FdStream;
using csp::transport_detail::LinkKind;

namespace {

constexpr auto kLongSpin = 60s;

class FdSpin : public csp_test::ForkTest {
 protected:
  /// As ForkTest::fork_with; this side's end with a spin bound of kLongSpin
  /// (null if the link is not an fd stream).
  template <class F>
  std::unique_ptr<FdStream> fork_with(F child) {
    std::unique_ptr<ByteStream> end = ForkTest::fork_with(std::move(child));
    auto* fd = dynamic_cast<FdStream*>(end.get());
    if (!fd) return nullptr;
    end.release();
    fd->set_max_spin(kLongSpin);
    return std::unique_ptr<FdStream>(fd);
  }
};

char read_byte(ByteStream& s) {
  char c = 0;
  auto got = s.read_some(&c, 1, csp::detail::forever);
  if (!got || *got != 1) throw std::runtime_error("no byte");
  return c;
}

auto since(std::chrono::steady_clock::time_point t0) { return std::chrono::steady_clock::now() - t0; }

TEST_P(FdSpin, DeadlineDuringTheSpinIsHonoured) {
  auto s = fork_with([](ByteStream& c) { read_byte(c); });
  ASSERT_TRUE(s);
  char buf[8];
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s->read_some(buf, sizeof buf, csp::detail::Clock::now() + 20ms).has_value());
  EXPECT_GE(since(t0), 20ms);
  EXPECT_LT(since(t0), kLongSpin / 2);
  // A deadline already past returns at once, spin or not.
  EXPECT_FALSE(s->read_some(buf, sizeof buf, csp::detail::Clock::now()).has_value());
  s->write_all("g", 1);
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, DeadlineIsHonouredInACoroutine) {
  auto s = fork_with([](ByteStream& c) { read_byte(c); });
  ASSERT_TRUE(s);
  std::chrono::steady_clock::duration waited{};
  bool timed_out = false;
  csp::Parallel(csp::process([&] {
    char buf[8];
    const auto t0 = std::chrono::steady_clock::now();
    timed_out = !s->read_some(buf, sizeof buf, csp::detail::Clock::now() + 20ms).has_value();
    waited = since(t0);
  }));
  EXPECT_TRUE(timed_out);
  EXPECT_GE(waited, 20ms);
  EXPECT_LT(waited, kLongSpin / 2);
  s->write_all("g", 1);
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, PeerCloseDuringTheSpinIsSeen) {
  // The child closes its end but lives on until we saw the end of stream,
  // so what ends our read is the close, not the child's exit.
  int hold[2];
  ASSERT_EQ(::pipe(hold), 0);
  auto s = fork_with([&](ByteStream& c) {
    ::close(hold[1]);
    read_byte(c);
    c.close();
    char done;
    [[maybe_unused]] auto r = ::read(hold[0], &done, 1);
  });
  ::close(hold[0]);
  ASSERT_TRUE(s);
  s->write_all("g", 1);
  char buf[8];
  const auto t0 = std::chrono::steady_clock::now();
  auto got = s->read_some(buf, sizeof buf, csp::detail::forever);
  const auto waited = since(t0);
  ::close(hold[1]);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, 0u);
  EXPECT_LT(waited, kLongSpin / 2);
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, PeerDeathDuringTheSpinIsSeen) {
  auto s = fork_with([](ByteStream& c) {
    read_byte(c);
    ::kill(::getpid(), SIGKILL);
  });
  ASSERT_TRUE(s);
  s->write_all("g", 1);
  char buf[8];
  const auto t0 = std::chrono::steady_clock::now();
  try {
    // End of stream, or a reset connection (TCP may report either).
    auto got = s->read_some(buf, sizeof buf, csp::detail::forever);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, 0u);
  } catch (const csp::TransportError&) {
  }
  EXPECT_LT(since(t0), kLongSpin / 2);
  EXPECT_EQ(join(), 100 + SIGKILL);
}

// FNV-1a over bytes in stream order: a lost, repeated or reordered byte
// changes it (a plain sum would not see a reordering).
std::uint64_t fnv1a(std::uint64_t h, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ull;

TEST_P(FdSpin, WriteThatWouldBlockSpinsUntilThePeerReads) {
  // More than any pipe or socket buffer holds, so the first write(2) takes
  // only part of it and the rest spins while the child drains it; the
  // child sends back a hash of what it read, in order.
  constexpr std::size_t kBytes = 16u << 20;
  auto s = fork_with([&](ByteStream& c) {
    std::vector<unsigned char> buf(1 << 16);
    std::uint64_t hash = kFnvBasis;
    for (std::size_t got = 0; got < kBytes;) {
      auto r = c.read_some(buf.data(), std::min(buf.size(), kBytes - got), csp::detail::forever);
      if (!r || *r == 0) throw std::runtime_error("short stream");
      hash = fnv1a(hash, buf.data(), *r);
      got += *r;
    }
    c.write_all(&hash, sizeof hash);
  });
  ASSERT_TRUE(s);
  std::vector<unsigned char> data(kBytes);
  std::uint32_t x = 2463534242u;  // xorshift32: no period a shifted copy could hide in
  for (auto& b : data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<unsigned char>(x);
  }
  const auto t0 = std::chrono::steady_clock::now();
  s->write_all(data.data(), data.size());
  EXPECT_LT(since(t0), kLongSpin / 2);
  std::uint64_t hash = 0;
  std::size_t have = 0;
  while (have < sizeof hash) {
    auto r = s->read_some(reinterpret_cast<char*>(&hash) + have, sizeof hash - have, csp::detail::forever);
    ASSERT_TRUE(r && *r > 0);
    have += *r;
  }
  EXPECT_EQ(hash, fnv1a(kFnvBasis, data.data(), data.size()));
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, ManySmallWritesArriveInOrderAndOnce) {
  // Frame-sized writes (each one write(2) when the fd has room) from the
  // child while this side reads in large chunks: every record arrives once,
  // in order, whatever the split of the reads.
  constexpr std::uint32_t kRecords = 200000;
  auto s = fork_with([&](ByteStream& c) {
    for (std::uint32_t i = 0; i < kRecords; ++i) {
      std::uint32_t rec[3] = {i, ~i, i * 2654435761u};
      c.write_all(rec, sizeof rec);
    }
  });
  ASSERT_TRUE(s);
  std::vector<std::uint32_t> buf(1 << 14);
  std::uint32_t next = 0;
  std::size_t have = 0;  // bytes in buf
  while (next < kRecords) {
    auto r = s->read_some(reinterpret_cast<char*>(buf.data()) + have, buf.size() * 4 - have, csp::detail::forever);
    ASSERT_TRUE(r && *r > 0) << "stream ended at record " << next;
    have += *r;
    std::size_t i = 0;
    for (; (have - i * 4) >= 12; i += 3, ++next) {
      ASSERT_EQ(buf[i], next);
      ASSERT_EQ(buf[i + 1], ~next);
      ASSERT_EQ(buf[i + 2], next * 2654435761u);
    }
    std::memmove(buf.data(), buf.data() + i, have - i * 4);
    have -= i * 4;
  }
  char extra;
  auto r = s->read_some(&extra, 1, csp::detail::forever);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 0u);  // nothing repeated after the last record
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, WriteToAFullFdWaitsAndKeepsOrder) {
  // The fd is filled to the brim behind the stream's back, so the frame
  // written next finds it full (write(2) refused); it must wait, then go
  // out once, after the filler. The child starts draining only when told
  // (a pipe made before the fork), right before that write.
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  auto s = fork_with([&](ByteStream& c) {
    ::close(go[1]);
    char g;
    if (::read(go[0], &g, 1) != 1) throw std::runtime_error("no go");
    // The stream must be 'f'... 'X' u64, the u64 counting the 'f's.
    std::uint64_t fill = 0, said = 0;
    std::size_t tail = 0;  // bytes of 'X' u64 seen
    bool well_formed = true;
    std::vector<char> buf(1 << 16);
    while (tail < 9) {
      auto r = c.read_some(buf.data(), buf.size(), csp::detail::forever);
      if (!r || *r == 0) throw std::runtime_error("short stream");
      for (std::size_t i = 0; i < *r; ++i) {
        if (tail == 0 && buf[i] == 'f') {
          ++fill;
        } else if (tail == 0) {
          well_formed = well_formed && buf[i] == 'X';
          tail = 1;
        } else if (tail < 9) {
          said |= std::uint64_t{static_cast<unsigned char>(buf[i])} << (8 * (tail - 1));
          ++tail;
        } else {
          well_formed = false;  // a byte after the frame: something was sent twice
        }
      }
    }
    const std::uint64_t ok = well_formed && said == fill;
    c.write_all(&ok, sizeof ok);
  });
  ::close(go[0]);
  ASSERT_TRUE(s);
  const int fd = s->fds().back();  // the write end
  std::vector<char> filler(4096, 'f');
  std::uint64_t filled = 0;
  for (;;) {
    const ssize_t w = ::write(fd, filler.data(), filler.size());
    if (w < 0 && errno == EAGAIN) break;
    ASSERT_GT(w, 0);
    filled += static_cast<std::uint64_t>(w);
  }
  char frame[9] = {'X'};
  for (int i = 0; i < 8; ++i) frame[1 + i] = static_cast<char>(filled >> (8 * i));
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  const auto t0 = std::chrono::steady_clock::now();
  s->write_all(frame, sizeof frame);
  EXPECT_LT(since(t0), kLongSpin / 2);
  std::uint64_t ok = 0;
  for (std::size_t have = 0; have < sizeof ok;) {
    auto r = s->read_some(reinterpret_cast<char*>(&ok) + have, sizeof ok - have, csp::detail::forever);
    ASSERT_TRUE(r && *r > 0);
    have += *r;
  }
  EXPECT_EQ(ok, 1u) << filled << " filler bytes";
  EXPECT_EQ(join(), 0);
}

TEST_P(FdSpin, WriteToAPeerThatDiesDuringTheSpinFails) {
  auto s = fork_with([](ByteStream& c) {
    read_byte(c);
    ::kill(::getpid(), SIGKILL);
  });
  ASSERT_TRUE(s);
  s->write_all("g", 1);
  std::vector<char> data(64u << 20, 'z');  // more than the buffers hold: the write spins
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(s->write_all(data.data(), data.size()), csp::TransportError);
  EXPECT_LT(since(t0), kLongSpin / 2);
  EXPECT_EQ(join(), 100 + SIGKILL);
}

TEST_P(FdSpin, AWaitingCoroutineLetsItsWorkerRun) {
  // The child echoes one byte. The reader waits for it; the writer, which
  // sends the byte, runs on the same worker when CSP_WORKERS=1 (how ctest
  // runs this binary first), so it runs only if the reader's wait lets the
  // worker go: a coroutine that spun without yielding would hold it until
  // the end of its spin.
  auto s = fork_with([](ByteStream& c) {
    char b = read_byte(c);
    c.write_all(&b, 1);
  });
  ASSERT_TRUE(s);
  std::atomic<bool> reading{false};
  std::chrono::steady_clock::duration waited{};
  char echoed = 0;
  csp::Parallel(
      csp::process([&] {
        const auto t0 = std::chrono::steady_clock::now();
        reading.store(true);
        echoed = read_byte(*s);
        waited = since(t0);
      }),
      csp::process([&] {
        while (!reading.load()) csp::yield();
        s->write_all("e", 1);
      }));
  EXPECT_EQ(echoed, 'e');
  EXPECT_LT(waited, kLongSpin / 2);
  EXPECT_EQ(join(), 0);
}

INSTANTIATE_TEST_SUITE_P(Links, FdSpin, ::testing::Values(LinkKind::pipe, LinkKind::unix_socket, LinkKind::tcp),
                         csp_test::link_kind_name);

}  // namespace
