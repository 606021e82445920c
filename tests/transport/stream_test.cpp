// The ByteStream contract of csp/transport/stream.hpp, once per link kind
// (shm, pipe, unix, tcp), between this process and a forked child: bytes in
// order and complete whatever the chunking, gathered writes, read
// deadlines, end of stream after close, and a write to a vanished peer is a
// TransportError.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csp/csp.hpp>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;
using csp::transport_detail::ByteStream;
using csp::transport_detail::ConstBuffer;
using csp::transport_detail::LinkKind;

namespace {

using Stream = csp_test::ForkTest;

std::vector<unsigned char> pattern(std::size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

void read_exactly(ByteStream& s, void* out, std::size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    auto got = s.read_some(p, n, csp::detail::forever);
    ASSERT_TRUE(got.has_value());
    ASSERT_GT(*got, 0u) << "early end of stream";
    p += *got;
    n -= *got;
  }
}

TEST_P(Stream, BytesArriveInOrderWhateverTheChunking) {
  const std::vector<std::size_t> sizes = {1, 7, 4096, 65537, 1 << 20, 8 << 20};
  auto s = fork_with([&](ByteStream& c) {
    // Echo everything back in odd-sized pieces.
    std::vector<unsigned char> buf(12345);
    for (;;) {
      auto got = c.read_some(buf.data(), buf.size(), csp::detail::forever);
      if (!got || *got == 0) break;
      c.write_all(buf.data(), *got);
    }
  });
  unsigned seed = 1;
  for (std::size_t n : sizes) {
    auto out = pattern(n, seed++);
    std::vector<unsigned char> back(n);
    // Write in a thread-free way: the pipe would fill if we wrote everything
    // first, so interleave writes and reads in pieces.
    std::size_t sent = 0, got = 0;
    while (got < n) {
      if (sent < n) {
        const std::size_t piece = std::min<std::size_t>(n - sent, 32 * 1024);
        s->write_all(out.data() + sent, piece);
        sent += piece;
      }
      auto r = s->read_some(back.data() + got, std::min<std::size_t>(n - got, 32 * 1024 + 7), csp::detail::forever);
      ASSERT_TRUE(r && *r > 0);
      got += *r;
    }
    ASSERT_EQ(out, back) << "size " << n;
  }
  s->close();
  EXPECT_EQ(join(), 0);
}

TEST_P(Stream, GatheredWriteKeepsOrder) {
  auto s = fork_with([](ByteStream& c) {
    std::string a = "head:", b(100000, 'b'), d = ":tail";
    ConstBuffer parts[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {d.data(), d.size()}};
    c.write_all_v(parts, 3);
  });
  std::string got(5 + 100000 + 5, '\0');
  read_exactly(*s, got.data(), got.size());
  EXPECT_EQ(got, "head:" + std::string(100000, 'b') + ":tail");
  EXPECT_EQ(join(), 0);
}

TEST_P(Stream, ReadDeadlineAndEndOfStream) {
  auto s = fork_with([](ByteStream& c) {
    char go;
    ASSERT_TRUE(c.read_some(&go, 1, csp::detail::forever).has_value());
    c.write_all("x", 1);
    c.close();
  });
  char buf[16];
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(s->read_some(buf, sizeof buf, csp::detail::Clock::now() + 20ms).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  s->write_all("g", 1);
  read_exactly(*s, buf, 1);
  EXPECT_EQ(buf[0], 'x');
  auto end = s->read_some(buf, sizeof buf, csp::detail::forever);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(*end, 0u);
  EXPECT_EQ(join(), 0);
}

TEST_P(Stream, WriteToAVanishedPeerIsATransportError) {
  auto s = fork_with([](ByteStream&) { ::_exit(0); });
  EXPECT_EQ(join(), 0);
  std::vector<char> data(1 << 20, 'z');
  EXPECT_THROW(
      {
        for (int i = 0; i < 64; ++i) s->write_all(data.data(), data.size());
      },
      csp::TransportError);
  EXPECT_FALSE(s->describe().empty());
}

TEST_P(Stream, ReportsItsFds) {
  auto s = fork_with([](ByteStream&) {});
  EXPECT_FALSE(s->fds().empty());
  EXPECT_EQ(join(), 0);
}

INSTANTIATE_TEST_SUITE_P(Links, Stream, csp_test::all_link_kinds(), csp_test::link_kind_name);

}  // namespace
