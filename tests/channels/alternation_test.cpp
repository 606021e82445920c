// Tests of csp/alternation.hpp: PriSelect, AltSelect, FairSelect and
// csp::Alternation; input, output, timeout and skip guards with actions and
// .when(); the selected index and value; fairness; exactly-once delivery
// when selects meet selects; poison and retire of guard channels.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

/// A channel with `n` values already buffered (an always-ready input).
csp::Channel<int> filled(int n, int first = 0) {
  csp::Channel<int> ch{csp::buffer(static_cast<std::size_t>(n))};
  auto w = ch.writer();
  for (int i = 0; i < n; ++i) EXPECT_TRUE(w.try_write(first + i));
  return ch;  // `w` leaves: readers drain, then see ChannelRetired
}

// ---------------------------------------------------------------------------
// Priority and fairness

TEST(PriSelect, AlwaysTakesTheFirstReadyGuard) {
  auto a = filled(100, 0), b = filled(100, 1000), c = filled(100, 2000);
  auto ra = a.reader(), rb = b.reader(), rc = c.reader();
  for (int i = 0; i < 100; ++i) {
    auto s = csp::PriSelect(csp::input(ra), csp::input(rb), csp::input(rc));
    ASSERT_EQ(s.index, 0u);
    ASSERT_EQ(s.value<int>(), i);
  }
  // `a` drained and retired: the next ready guard is b.
  auto s = csp::PriSelect(csp::input(ra), csp::input(rb), csp::input(rc));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.value<int>(), 1000);
}

TEST(PriSelect, TakesALaterGuardWhenTheFirstIsNotReady) {
  csp::Channel<int> empty;
  auto keep_writer = empty.writer();
  auto b = filled(1, 7);
  auto s = csp::PriSelect(csp::input(empty.reader()), csp::input(b.reader()));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.value<int>(), 7);
}

TEST(FairSelect, ThreeAlwaysReadyInputsShareThirtyThousandSelections) {
  constexpr int n = 30000;
  auto a = filled(n), b = filled(n), c = filled(n);
  auto ra = a.reader(), rb = b.reader(), rc = c.reader();
  int count[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) {
    auto s = csp::FairSelect(csp::input(ra), csp::input(rb), csp::input(rc));
    ASSERT_LT(s.index, 3u);
    ++count[s.index];
  }
  for (int k = 0; k < 3; ++k) {
    EXPECT_GE(count[k], n / 3 - n / 3 / 20) << "guard " << k;  // within 5% of a third
    EXPECT_LE(count[k], n / 3 + n / 3 / 20) << "guard " << k;
  }
}

TEST(FairSelect, AlternationFairSelectSharesInAProcess) {
  constexpr int n = 30000;
  auto a = filled(n), b = filled(n), c = filled(n);
  auto [counts] = csp::Parallel(csp::process(
      [](csp::Reader<int> ra, csp::Reader<int> rb, csp::Reader<int> rc) {
        csp::Alternation alt{csp::input(ra), csp::input(rb), csp::input(rc)};
        std::vector<int> count(3, 0);
        for (int i = 0; i < n; ++i) ++count.at(alt.fair_select().index);
        return count;
      },
      a.reader(), b.reader(), c.reader()));
  for (int k = 0; k < 3; ++k) {
    EXPECT_GE(counts[k], n / 3 - n / 3 / 20) << "guard " << k;
    EXPECT_LE(counts[k], n / 3 + n / 3 / 20) << "guard " << k;
  }
}

TEST(AltSelect, ChoosesAmongAllReadyGuards) {
  constexpr int n = 3000;
  auto a = filled(n), b = filled(n), c = filled(n);
  auto ra = a.reader(), rb = b.reader(), rc = c.reader();
  int count[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) ++count[csp::AltSelect(csp::input(ra), csp::input(rb), csp::input(rc)).index];
  for (int k = 0; k < 3; ++k) EXPECT_GT(count[k], n / 5) << "AltSelect neglects guard " << k;
}

TEST(AltSelect, OnlyAReadyGuardFires) {
  csp::Channel<int> quiet;
  auto keep_writer = quiet.writer();
  auto ready = filled(200);
  auto rq = quiet.reader(), rr = ready.reader();
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(csp::AltSelect(csp::input(rq), csp::input(rr), csp::input(rq)).index, 1u);
}

TEST(Alternation, SelectPriSelectAndFairSelectOnOneObject) {
  auto a = filled(50, 0), b = filled(50, 100);
  csp::Alternation alt{csp::input(a.reader()), csp::input(b.reader())};
  for (int i = 0; i < 10; ++i) {
    auto s = alt.pri_select();
    EXPECT_EQ(s.index, 0u);
    EXPECT_EQ(s.value<int>(), i);
  }
  int seen[2] = {0, 0};
  for (int i = 0; i < 20; ++i) ++seen[alt.fair_select().index];
  EXPECT_EQ(seen[0], 10);
  EXPECT_EQ(seen[1], 10);
  for (int i = 0; i < 20; ++i) EXPECT_LT(alt.select().index, 2u);
}

// ---------------------------------------------------------------------------
// Guards

TEST(Guards, InputValueAndIndex) {
  csp::Channel<std::string> ch{csp::buffer(1)};
  auto w = ch.writer();
  w.write("hello");
  csp::Channel<int> other;
  auto keep = other.writer();
  auto s = csp::PriSelect(csp::input(other.reader()), csp::input(ch.reader()));
  EXPECT_EQ(s.index, 1u);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s.value<std::string>(), "hello");
  EXPECT_THROW(s.value<int>(), csp::Error) << "asking for the wrong type must throw";
}

TEST(Guards, InputActionGetsTheValue) {
  auto ch = filled(2, 40);
  int got = 0;
  bool ran = false;
  auto s = csp::PriSelect(csp::input(ch.reader(), [&](int v) { got = v; }));
  EXPECT_EQ(s.index, 0u);
  EXPECT_EQ(got, 40);
  EXPECT_EQ(s.value<int>(), 40) << "the value is in the result as well";
  csp::PriSelect(csp::input(ch.reader(), [&] { ran = true; }));  // an action may ignore the value
  EXPECT_TRUE(ran);
}

TEST(Guards, OutputDeliversItsValueAndRunsItsAction) {
  csp::Channel<int> ch;
  bool ran = false;
  auto [unused, got] = csp::Parallel(csp::process(
                                         [&](csp::Writer<int> w) {
                                           auto s = csp::PriSelect(csp::output(w, 42, [&] { ran = true; }));
                                           EXPECT_EQ(s.index, 0u);
                                           EXPECT_FALSE(s.has_value());
                                         },
                                         ch.writer()),
                                     csp::process([](csp::Reader<int> r) { return r.read(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 42);
  EXPECT_TRUE(ran);
}

TEST(Guards, OutputIntoABufferWithRoomFiresAtOnce) {
  csp::Channel<int> ch{csp::buffer(1)};
  auto r = ch.reader();
  auto s = csp::PriSelect(csp::output(ch.writer(), 5), csp::skip());
  EXPECT_EQ(s.index, 0u);
  EXPECT_EQ(r.read(), 5);
}

TEST(Guards, OutputThatDidNotFireDeliversNothing) {
  csp::Channel<int> ch;
  auto r = ch.reader();
  auto keep = ch.writer();  // the writer side stays open: try_read reports "nothing", not retirement
  auto s = csp::PriSelect(csp::output(ch.writer(), 5), csp::timeout(5ms));
  EXPECT_EQ(s.index, 1u);
  EXPECT_FALSE(r.try_read().has_value()) << "an output guard that did not fire left its value behind";
  auto s2 = csp::PriSelect(csp::output(ch.writer(), 6), csp::skip());
  EXPECT_EQ(s2.index, 1u);
  EXPECT_FALSE(r.try_read().has_value());
}

TEST(Guards, TimeoutFiresAfterItsDurationWhenNothingIsReady) {
  csp::Channel<int> ch;
  auto keep = ch.writer();
  auto r = ch.reader();
  for (auto d : {1ms, 20ms}) {
    bool ran = false;
    auto t0 = Clock::now();
    auto s = csp::PriSelect(csp::input(r), csp::timeout(d, [&] { ran = true; }));
    auto elapsed = Clock::now() - t0;
    EXPECT_EQ(s.index, 1u);
    EXPECT_TRUE(ran);
    EXPECT_GE(elapsed, d);
    EXPECT_LT(elapsed, d + 10s);  // hang guard
  }
}

TEST(Guards, TimeoutFiresInAProcessAndAThread) {
  csp::Channel<int> ch;
  auto keep = ch.writer();
  auto body = [](csp::Reader<int> r) {
    auto t0 = Clock::now();
    auto s = csp::AltSelect(csp::input(r), csp::timeout(15ms));
    return std::make_pair(s.index, Clock::now() - t0);
  };
  auto [p, t] = csp::Parallel(csp::process(body, ch.reader()), csp::thread_process(body, ch.reader()));
  EXPECT_EQ(p.first, 1u);
  EXPECT_GE(p.second, 15ms);
  EXPECT_EQ(t.first, 1u);
  EXPECT_GE(t.second, 15ms);
}

TEST(Guards, EarliestTimeoutFires) {
  csp::Channel<int> ch;
  auto keep = ch.writer();
  auto s = csp::PriSelect(csp::timeout(10s), csp::input(ch.reader()), csp::timeout(5ms));
  EXPECT_EQ(s.index, 2u);
}

TEST(Guards, InputBeatsATimeoutWhenAValueComes) {
  csp::Channel<int> ch;
  auto [unused, s_index] = csp::Parallel(csp::process([](csp::Writer<int> w) { w.write(1); }, ch.writer()),
                                         csp::process(
                                             [](csp::Reader<int> r) {
                                               return csp::PriSelect(csp::input(r), csp::timeout(60s)).index;
                                             },
                                             ch.reader()));
  (void)unused;
  EXPECT_EQ(s_index, 0u);
}

TEST(Guards, SkipFiresAtOnceWhenNothingIsReady) {
  csp::Channel<int> ch;
  auto keep = ch.writer();
  bool ran = false;
  auto s = csp::PriSelect(csp::input(ch.reader()), csp::skip([&] { ran = true; }));
  EXPECT_EQ(s.index, 1u);
  EXPECT_TRUE(ran);
  EXPECT_FALSE(s.has_value());
  // Skip also beats a timeout: it is ready now.
  EXPECT_EQ(csp::PriSelect(csp::timeout(1s), csp::skip()).index, 1u);
}

TEST(Guards, ReadyInputIsPreferredToSkip) {
  auto ch = filled(1, 3);
  auto s = csp::PriSelect(csp::skip(), csp::input(ch.reader()));
  EXPECT_EQ(s.index, 1u) << "skip fires only when nothing else is ready";
  EXPECT_EQ(s.value<int>(), 3);
}

TEST(Guards, WhenFalseDisablesAReadyGuard) {
  auto a = filled(5, 0), b = filled(5, 100);
  auto ra = a.reader(), rb = b.reader();
  auto s = csp::PriSelect(csp::input(ra).when(false), csp::input(rb).when(true));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.value<int>(), 100);
  auto s2 = csp::PriSelect(csp::input(ra).when(false), csp::skip().when(true));
  EXPECT_EQ(s2.index, 1u);
  auto s3 = csp::PriSelect(csp::input(ra).when(true), csp::skip());
  EXPECT_EQ(s3.index, 0u);
  EXPECT_EQ(s3.value<int>(), 0) << "a disabled guard must not have consumed a value";
  auto s4 = csp::PriSelect(csp::timeout(1ms).when(false), csp::skip());
  EXPECT_EQ(s4.index, 1u);
  csp::Channel<int> out{csp::buffer(1)};
  auto keep_out = out.writer();
  auto s5 = csp::PriSelect(csp::output(out.writer(), 1).when(false), csp::skip());
  EXPECT_EQ(s5.index, 1u);
  EXPECT_FALSE(out.reader().try_read().has_value());
}

TEST(Guards, EveryGuardDisabledIsAnError) {
  auto a = filled(1);
  EXPECT_THROW(csp::PriSelect(csp::input(a.reader()).when(false), csp::skip().when(false)), csp::Error);
}

TEST(Guards, AlternationEnableAndReofferedOutput) {
  csp::Channel<int> out;
  auto in = filled(10, 0);
  csp::Alternation alt{csp::output(out.writer(), 7), csp::input(in.reader())};
  auto [got, unused] = csp::Parallel(csp::process(
                                         [](csp::Reader<int> r) {
                                           std::vector<int> v;
                                           for (int x : r) v.push_back(x);
                                           return v;
                                         },
                                         out.reader()),
                                     csp::process([&] {
                                       alt.enable(1, false);
                                       for (int i = 0; i < 3; ++i) EXPECT_EQ(alt.pri_select().index, 0u);
                                       alt.enable(0, false);
                                       alt.enable(1, true);
                                       EXPECT_EQ(alt.pri_select().index, 1u);
                                       alt = csp::Alternation{};  // drops the writer end: the reader finishes
                                     }));
  (void)unused;
  EXPECT_EQ(got, (std::vector<int>{7, 7, 7})) << "an Alternation must offer its output value anew each time";
}

// ---------------------------------------------------------------------------
// Selects meeting selects: exactly one guard fires, completely

enum class Mode { pri, alt, fair };

/// Select over `out` (offering `next`) and `in`, enabled as given.
csp::Selected select_pair(Mode m, csp::Writer<int>& out, int next, bool send, csp::Reader<int>& in, bool receive) {
  switch (m) {
    case Mode::pri: return csp::PriSelect(csp::output(out, next).when(send), csp::input(in).when(receive));
    case Mode::alt: return csp::AltSelect(csp::output(out, next).when(send), csp::input(in).when(receive));
    case Mode::fair: return csp::FairSelect(csp::output(out, next).when(send), csp::input(in).when(receive));
  }
  return {};
}

/// Sends 0..n-1 on `out` and receives n values on `in`, by selection only.
/// Returns whether the received values were exactly 0..n-1 in order.
bool mirror_side(Mode m, csp::Writer<int> out, csp::Reader<int> in, int n) {
  int sent = 0, received = 0;
  bool ok = true;
  while (sent < n || received < n) {
    auto s = select_pair(m, out, sent, sent < n, in, received < n);
    if (s.index == 0) {
      ++sent;
    } else {
      if (s.value<int>() != received) ok = false;
      ++received;
    }
  }
  return ok;
}

class Mirror : public ::testing::TestWithParam<Mode> {};

TEST_P(Mirror, OutputAgainstInputThousandTimesNothingLostOrDuplicated) {
  constexpr int n = 1000;
  csp::Channel<int> a{"A"}, b{"B"};
  auto [x_ok, y_ok] = csp::Parallel(csp::process(mirror_side, GetParam(), a.writer(), b.reader(), n).named("X"),
                                    csp::process(mirror_side, GetParam(), b.writer(), a.reader(), n).named("Y"));
  EXPECT_TRUE(x_ok);
  EXPECT_TRUE(y_ok);
}

TEST_P(Mirror, FreshChannelsEveryRound) {
  // 1,000 rounds, each a single select on each side over fresh channels:
  // either X's output on A met Y's input, or Y's output on B met X's input.
  for (int round = 0; round < 1000; ++round) {
    csp::Channel<int> a, b;
    auto side = [](Mode m, csp::Writer<int> out, csp::Reader<int> in, int mine) {
      auto s = select_pair(m, out, mine, true, in, true);
      return s.index == 0 ? -1 : s.value<int>();
    };
    auto [x, y] = csp::Parallel(csp::process(side, GetParam(), a.writer(), b.reader(), 1),
                                csp::process(side, GetParam(), b.writer(), a.reader(), 2));
    bool x_sent = x == -1 && y == 1;
    bool y_sent = x == 2 && y == -1;
    ASSERT_TRUE(x_sent || y_sent) << "round " << round << ": x=" << x << " y=" << y;
  }
}

TEST_P(Mirror, ThreadAgainstProcess) {
  constexpr int n = 300;
  csp::Channel<int> a, b;
  auto [x_ok, y_ok] = csp::Parallel(csp::thread_process(mirror_side, GetParam(), a.writer(), b.reader(), n),
                                    csp::process(mirror_side, GetParam(), b.writer(), a.reader(), n));
  EXPECT_TRUE(x_ok);
  EXPECT_TRUE(y_ok);
}

INSTANTIATE_TEST_SUITE_P(Modes, Mirror, ::testing::Values(Mode::pri, Mode::alt, Mode::fair),
                         [](const auto& info) {
                           return std::string(info.param == Mode::pri ? "Pri" : info.param == Mode::alt ? "Alt" : "Fair");
                         });

TEST(ExactlyOnce, CompetingInputSelectsLoseNoValue) {
  // Four selecting readers over two channels fed by four plain writers:
  // every value arrives exactly once.
  constexpr int writers_per_channel = 2, n = 2000;
  csp::Channel<int> a{"a"}, b{"b"};
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < writers_per_channel; ++k) {
    writers.push_back(csp::process(
        [k](csp::Writer<int> w) {
          for (int i = 0; i < n; ++i) w.write((2 * k) * n + i);
        },
        a.writer()));
    writers.push_back(csp::process(
        [k](csp::Writer<int> w) {
          for (int i = 0; i < n; ++i) w.write((2 * k + 1) * n + i);
        },
        b.writer()));
  }
  std::vector<csp::Process<std::vector<int>>> readers;
  for (int k = 0; k < 4; ++k)
    readers.push_back(csp::process(
        [k](csp::Reader<int> ra, csp::Reader<int> rb) {
          std::vector<int> got;
          try {
            for (;;) {
              auto s = k % 2 ? csp::AltSelect(csp::input(ra), csp::input(rb)) : csp::FairSelect(csp::input(ra), csp::input(rb));
              got.push_back(s.value<int>());
            }
          } catch (const csp::ChannelRetired&) {  // both channels' writers are done
          }
          return got;
        },
        a.reader(), b.reader()));
  auto [unused, got] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  std::vector<int> seen(4 * n, 0);
  for (auto& g : got)
    for (int v : g) {
      ASSERT_GE(v, 0);
      ASSERT_LT(v, 4 * n);
      ++seen[v];
    }
  for (int v = 0; v < 4 * n; ++v) ASSERT_EQ(seen[v], 1) << "value " << v;
}

TEST(ExactlyOnce, CompetingOutputSelectsDeliverEachValueOnce) {
  // Four selecting writers (output guard + a timeout they loop on) and two
  // plain readers: every offered value is delivered exactly once.
  constexpr int n = 1000;
  csp::Channel<int> ch{"out"};
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < 4; ++k)
    writers.push_back(csp::process(
        [k](csp::Writer<int> w) {
          for (int i = 0; i < n;) {
            auto s = csp::PriSelect(csp::output(w, k * n + i), csp::timeout(1ms));
            if (s.index == 0) ++i;  // only a fired output counts as sent
          }
        },
        ch.writer()));
  std::vector<csp::Process<std::vector<int>>> readers;
  for (int k = 0; k < 2; ++k)
    readers.push_back(csp::process(
        [](csp::Reader<int> r) {
          std::vector<int> got;
          for (int v : r) got.push_back(v);
          return got;
        },
        ch.reader()));
  auto [unused, got] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  std::vector<int> seen(4 * n, 0);
  for (auto& g : got)
    for (int v : g) ++seen.at(v);
  for (int v = 0; v < 4 * n; ++v) ASSERT_EQ(seen[v], 1) << "value " << v;
}

// ---------------------------------------------------------------------------
// Poison and retire of guard channels

TEST(SelectPoison, PoisonedGuardChannelThrows) {
  csp::Channel<int> quiet, bad{"bad"};
  auto keep = quiet.writer();
  bad.poison();
  EXPECT_THROW(csp::PriSelect(csp::input(quiet.reader()), csp::input(bad.reader())), csp::ChannelPoisoned);
  EXPECT_THROW(csp::PriSelect(csp::output(bad.writer(), 1), csp::skip()), csp::ChannelPoisoned);
  EXPECT_THROW(csp::FairSelect(csp::input(bad.reader()), csp::timeout(1s)), csp::ChannelPoisoned);
}

TEST(SelectPoison, BlockedSelectIsWokenByPoison) {
  csp::Channel<int> a, b{"b"};
  auto keep_a = a.writer();
  auto [thrown, unused] = csp::Parallel(csp::process(
                                            [](csp::Reader<int> ra, csp::Reader<int> rb) {
                                              try {
                                                csp::AltSelect(csp::input(ra), csp::input(rb));
                                              } catch (const csp::ChannelPoisoned&) {
                                                return true;
                                              }
                                              return false;
                                            },
                                            a.reader(), b.reader()),
                                        csp::process(
                                            [](csp::Writer<int> wb) {
                                              for (int i = 0; i < 50; ++i) csp::yield();
                                              wb.poison();
                                            },
                                            b.writer()));
  (void)unused;
  EXPECT_TRUE(thrown);
}

TEST(SelectRetire, RetiredGuardsAreIgnoredUntilAllRetired) {
  csp::Channel<int> a{"a"}, b{"b", csp::buffer(2)};
  a.writer().retire();  // a: every writer left, nothing buffered
  auto wb = b.writer();
  wb.write(1);
  wb.write(2);
  auto ra = a.reader(), rb = b.reader();
  auto s = csp::PriSelect(csp::input(ra), csp::input(rb));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.value<int>(), 1);
  wb.retire();  // b retired, but it still holds a value
  s = csp::PriSelect(csp::input(ra), csp::input(rb));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(s.value<int>(), 2);
  EXPECT_THROW(csp::PriSelect(csp::input(ra), csp::input(rb)), csp::ChannelRetired);
}

TEST(SelectRetire, BlockedSelectThrowsWhenTheLastGuardRetires) {
  csp::Channel<int> a, b;
  auto [thrown, unused1, unused2] = csp::Parallel(
      csp::process(
          [](csp::Reader<int> ra, csp::Reader<int> rb) {
            int values = 0;
            try {
              for (;;) {
                csp::FairSelect(csp::input(ra), csp::input(rb));
                ++values;
              }
            } catch (const csp::ChannelRetired&) {
              return values;
            }
          },
          a.reader(), b.reader()),
      csp::process(
          [](csp::Writer<int> w) {
            for (int i = 0; i < 3; ++i) w.write(i);
          },
          a.writer()),
      csp::process(
          [](csp::Writer<int> w) {
            for (int i = 0; i < 5; ++i) w.write(i);
          },
          b.writer()));
  (void)unused1;
  (void)unused2;
  EXPECT_EQ(thrown, 8) << "the select must deliver every value, then see both retired";
}

TEST(SelectRetire, OutputGuardsToRetiredReadersAreIgnored) {
  csp::Channel<int> gone, open{csp::buffer(1)};
  gone.reader().retire();
  auto r = open.reader();
  auto s = csp::PriSelect(csp::output(gone.writer(), 1), csp::output(open.writer(), 2));
  EXPECT_EQ(s.index, 1u);
  EXPECT_EQ(r.read(), 2);
  r.retire();
  EXPECT_THROW(csp::PriSelect(csp::output(gone.writer(), 1), csp::output(open.writer(), 2)), csp::ChannelRetired);
}

}  // namespace
