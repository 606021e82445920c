// Volume tests across OS processes: one channel shared by 3 writing and 2
// reading processes (1,000,000 values, checksum and per-writer order), and
// alternation with output guards against input guards (1,000 rounds,
// nothing lost or duplicated).
//
// The volume test runs over the transport CSP_TRANSPORT names, pipe if it is
// unset: every value costs two round trips through the home (a remote write
// is acknowledged, a remote read asked for), and six processes share two
// cores here, where pipes took 24 s for the million and the shm rings, which
// spin before they park, 97 s. The selects run over the default transport.
// CSP_STRESS_VALUES overrides the volume; sanitizer builds use a tenth of
// it (they check correctness, and the children run under the sanitizer too).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <csp/csp.hpp>
#include <set>
#include <string>
#include <vector>

#include "transport_test_util.hpp"

namespace {

long stress_values() {
  if (const char* env = std::getenv("CSP_STRESS_VALUES"); env && *env) return std::atol(env);
#if defined(CSP_ASAN) || defined(CSP_TSAN)
  return 100'000;
#else
  return 1'000'000;
#endif
}

// Values carry their writer (high bits) and its sequence number.
constexpr int kShift = 40;
constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << kShift) - 1;

struct ReaderReport {
  std::uint64_t sum = 0;
  long count = 0;
  bool in_order = true;
};

}  // namespace

template <>
struct csp::codec<ReaderReport> {
  static void encode(ByteWriter& out, const ReaderReport& r) {
    out.put_u64(r.sum);
    out.put_u64(static_cast<std::uint64_t>(r.count));
    out.put_u8(r.in_order ? 1 : 0);
  }
  static ReaderReport decode(ByteReader& in) {
    ReaderReport r;
    r.sum = in.get_u64();
    r.count = static_cast<long>(in.get_u64());
    r.in_order = in.get_u8() == 1;
    return r;
  }
};

namespace {

TEST(Stress, ThreeWritersTwoReadersOneChannel) {
  const char* env = std::getenv("CSP_TRANSPORT");
  if (!env || !*env) csp::transport_detail::set_default_link_kind(csp::transport_detail::LinkKind::pipe);
  struct Restore {
    ~Restore() { csp::transport_detail::set_default_link_kind(std::nullopt); }
  } restore;
  const long total = stress_values();
  csp::Channel<std::uint64_t> ch{"shared"};
  std::vector<csp::Process<void>> writers;
  std::uint64_t want_sum = 0;
  for (int k = 0; k < 3; ++k) {
    const long mine = total / 3 + (k < total % 3 ? 1 : 0);
    for (long i = 0; i < mine; ++i) want_sum += (std::uint64_t(k) << kShift) | std::uint64_t(i);
    writers.push_back(csp::os_process(
        [](csp::Writer<std::uint64_t> out, int k, long n) {
          for (long i = 0; i < n; ++i) out.write((std::uint64_t(k) << kShift) | std::uint64_t(i));
        },
        ch.writer(), k, mine));
  }
  std::vector<csp::Process<ReaderReport>> readers;
  for (int r = 0; r < 2; ++r) {
    readers.push_back(csp::os_process(
        [](csp::Reader<std::uint64_t> in) {
          ReaderReport rep;
          long last[3] = {-1, -1, -1};
          for (std::uint64_t v : in) {
            const auto k = static_cast<int>(v >> kShift);
            const auto seq = static_cast<long>(v & kSeqMask);
            if (k < 0 || k > 2 || seq <= last[k]) rep.in_order = false;
            else last[k] = seq;
            rep.sum += v;
            ++rep.count;
          }
          return rep;
        },
        ch.reader()));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto [unused, reports] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("values_per_second", std::to_string(static_cast<long>(total / secs)));
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].count + reports[1].count, total);
  EXPECT_EQ(reports[0].sum + reports[1].sum, want_sum);
  EXPECT_TRUE(reports[0].in_order);
  EXPECT_TRUE(reports[1].in_order);
  EXPECT_GT(reports[0].count, 0);  // both readers took part
  EXPECT_GT(reports[1].count, 0);
}

constexpr int kRounds = 1000;

// Two children offer on two channels with output-guard selects; the parent
// takes with an input-guard select. Every value arrives exactly once.
TEST(Stress, ChildOutputGuardsAgainstParentInputGuards) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> c1{"c1"}, c2{"c2"};
  auto offerer = [](csp::Writer<int> w1, csp::Writer<int> w2, int tag) {
    int first = 0;
    for (int i = 0; i < kRounds; ++i) {
      const int v = tag * 100000 + i;
      auto s = csp::AltSelect(csp::output(w1, v), csp::output(w2, v));
      first += s.index == 0 ? 1 : 0;
    }
    return first;
  };
  auto taker = [](csp::Reader<int> r1, csp::Reader<int> r2) {
    std::vector<int> got;
    for (int i = 0; i < 2 * kRounds; ++i) got.push_back(csp::FairSelect(csp::input(r1), csp::input(r2)).value<int>());
    return got;
  };
  auto [a, b, got] = csp::Parallel(csp::os_process(offerer, c1.writer(), c2.writer(), 1),
                                   csp::os_process(offerer, c1.writer(), c2.writer(), 2),
                                   csp::process(taker, c1.reader(), c2.reader()));
  EXPECT_GE(a, 0);
  EXPECT_GE(b, 0);
  std::set<int> unique(got.begin(), got.end());
  EXPECT_EQ(unique.size(), got.size()) << "a value arrived twice";
  for (int tag : {1, 2})
    for (int i = 0; i < kRounds; ++i) ASSERT_TRUE(unique.count(tag * 100000 + i)) << "lost " << tag << ":" << i;
}

// The parent offers with output guards; two children take with input guards.
TEST(Stress, ParentOutputGuardsAgainstChildInputGuards) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> c1{"c1"}, c2{"c2"};
  auto taker = [](csp::Reader<int> r1, csp::Reader<int> r2) {
    std::vector<int> got;
    try {
      for (;;) got.push_back(csp::AltSelect(csp::input(r1), csp::input(r2)).value<int>());
    } catch (const csp::ChannelRetired&) {
    }
    return got;
  };
  auto offerer = [](csp::Writer<int> w1, csp::Writer<int> w2) {
    for (int i = 0; i < 2 * kRounds; ++i) csp::PriSelect(csp::output(w1, i), csp::output(w2, i));
  };
  auto [x, y, unused] = csp::Parallel(csp::os_process(taker, c1.reader(), c2.reader()),
                                      csp::os_process(taker, c1.reader(), c2.reader()),
                                      csp::process(offerer, c1.writer(), c2.writer()));
  (void)unused;
  std::vector<int> all = x;
  all.insert(all.end(), y.begin(), y.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<std::size_t>(2 * kRounds));
  for (int i = 0; i < 2 * kRounds; ++i) ASSERT_EQ(all[i], i);
}

// Both sides remote: the home (this process) only relays.
TEST(Stress, SelectsInTwoChildrenAgainstEachOther) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> c1{"c1"}, c2{"c2"};
  auto offerer = [](csp::Writer<int> w1, csp::Writer<int> w2) {
    for (int i = 0; i < kRounds; ++i) csp::AltSelect(csp::output(w1, i), csp::output(w2, i));
  };
  auto taker = [](csp::Reader<int> r1, csp::Reader<int> r2) {
    std::vector<int> got;
    for (int i = 0; i < kRounds; ++i) got.push_back(csp::AltSelect(csp::input(r1), csp::input(r2)).value<int>());
    return got;
  };
  auto [unused, got] = csp::Parallel(csp::os_process(offerer, c1.writer(), c2.writer()),
                                     csp::os_process(taker, c1.reader(), c2.reader()));
  (void)unused;
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) ASSERT_EQ(got[i], i);
}

}  // namespace
