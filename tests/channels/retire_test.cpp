// Tests of retire (csp/channel.hpp, DESIGN §3): side membership of ends,
// retire by call and by destruction of an end's last copy, draining the
// buffer before ChannelRetired, sides that never had a member, and
// propagation through csp::process arguments (csp/process.hpp).
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------
// Writers retire: readers drain, then ChannelRetired

TEST(Retire, ReadersDrainTenBufferedValuesThenSeeRetired) {
  csp::Channel<int> ch{"ten", csp::buffer(10)};
  // Two writers put 10 values in and retire explicitly.
  csp::Parallel(csp::process(
                    [](csp::Writer<int> out) {
                      for (int i = 0; i < 5; ++i) out.write(i);
                      out.retire();
                    },
                    ch.writer()),
                csp::process(
                    [](csp::Writer<int> out) {
                      for (int i = 5; i < 10; ++i) out.write(i);
                      out.retire();
                    },
                    ch.writer()));
  // Three readers share the 10 values, then each sees ChannelRetired.
  struct Got {
    std::vector<int> values;
    bool retired = false;
  };
  auto reader = [](csp::Reader<int> in) {
    Got got;
    try {
      for (;;) got.values.push_back(in.read());
    } catch (const csp::ChannelRetired&) {
      got.retired = true;
    }
    return got;
  };
  auto [a, b, c] = csp::Parallel(csp::process(reader, ch.reader()), csp::process(reader, ch.reader()),
                                 csp::thread_process(reader, ch.reader()));
  std::vector<int> all;
  for (Got* g : {&a, &b, &c}) {
    EXPECT_TRUE(g->retired);
    all.insert(all.end(), g->values.begin(), g->values.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Retire, BlockedReadersGetTheValuesThenRetired) {
  csp::Channel<int> ch{csp::buffer(10)};
  csp::Channel<int> ready{csp::buffer(3)};
  auto reader = [](csp::Reader<int> in, csp::Writer<int> ready_out) {
    ready_out.write(1);
    int n = 0;
    for (int v : in) (void)v, ++n;  // ends by ChannelRetired
    return n;
  };
  auto [n1, n2, n3, unused] = csp::Parallel(
      csp::process(reader, ch.reader(), ready.writer()), csp::process(reader, ch.reader(), ready.writer()),
      csp::process(reader, ch.reader(), ready.writer()), csp::process(
                                                             [](csp::Writer<int> out, csp::Reader<int> ready_in) {
                                                               for (int i = 0; i < 3; ++i) ready_in.read();
                                                               for (int i = 0; i < 10; ++i) out.write(i);
                                                             },  // `out` leaves its side as the process ends
                                                             ch.writer(), ready.reader()));
  (void)unused;
  EXPECT_EQ(n1 + n2 + n3, 10);
}

TEST(Retire, MessageNamesTheChannel) {
  csp::Channel<int> ch{"gone"};
  auto r = ch.reader();
  ch.writer().retire();
  try {
    r.read();
    FAIL() << "no ChannelRetired";
  } catch (const csp::ChannelRetired& e) {
    EXPECT_NE(std::string(e.what()).find("gone"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------
// Membership: ends, copies, destruction

TEST(Retire, ByDestructionOfTheLastCopyOfTheLastEnd) {
  csp::Channel<int> ch{csp::buffer(4)};
  auto r = ch.reader();
  csp::Writer<int> w1 = ch.writer();
  csp::Writer<int> w1_copy = w1;
  csp::Writer<int> w2 = ch.writer();
  w1.write(1);
  w1 = {};  // a copy remains: the end is still a member
  w1_copy.write(2);
  w1_copy = {};  // end 1 left; end 2 is still a member
  EXPECT_EQ(r.read(), 1);
  EXPECT_EQ(r.read(), 2);
  EXPECT_FALSE(r.try_read().has_value()) << "the writer side retired while an end was alive";
  w2 = {};  // the last end of the side: it retires
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

TEST(Retire, ThroughAnyCopyRetiresTheEndOnce) {
  csp::Channel<int> ch{csp::buffer(4)};
  auto r = ch.reader();
  auto w1 = ch.writer();
  auto w2 = ch.writer();
  auto w1_copy = w1;
  w1_copy.retire();
  w1.retire();       // the same end: no second departure
  w1_copy.retire();
  EXPECT_THROW(w1.write(1), csp::ChannelRetired) << "a retired end must not be usable";
  w2.write(2);  // w2 is still a member and the channel works
  EXPECT_EQ(r.read(), 2);
  EXPECT_FALSE(r.try_read().has_value()) << "retiring one end twice counted as two ends leaving";
  { auto destroyed = w1; }  // destroying copies of a retired end changes nothing
  EXPECT_FALSE(r.try_read().has_value());
  w2.retire();
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

TEST(Retire, ReadersRetireAndBlockedWriterGetsRetired) {
  csp::Channel<int> ch{"no-readers-left"};
  auto r1 = ch.reader();
  auto r2 = ch.reader();
  auto writer = csp::Spawn(csp::process(
      [](csp::Writer<int> out) {
        try {
          for (;;) out.write(1);
        } catch (const csp::ChannelRetired&) {
          return true;
        }
      },
      ch.writer()));
  EXPECT_EQ(r1.read(), 1);
  r1.retire();
  EXPECT_EQ(r2.read(), 1) << "one reader left, the other is still a member";
  r2.retire();
  EXPECT_TRUE(writer.join());
}

TEST(Retire, WritesAfterTheReadersRetiredThrow) {
  csp::Channel<int> ch{csp::buffer(4)};
  auto w = ch.writer();
  ch.reader().retire();
  EXPECT_THROW(w.write(1), csp::ChannelRetired);
  EXPECT_THROW(w.try_write(1), csp::ChannelRetired) << "try_write must report retirement, not 'full'";
  EXPECT_THROW(w.write_for(1, 1ms), csp::ChannelRetired);
}

TEST(Retire, FailedWriteToRetiredReadersKeepsTheValue) {
  csp::Channel<std::unique_ptr<int>> ch{csp::buffer(4)};
  auto w = ch.writer();
  ch.reader().retire();
  auto p = std::make_unique<int>(1);
  EXPECT_THROW(w.write(std::move(p)), csp::ChannelRetired);
  ASSERT_TRUE(p) << "a write that threw ChannelRetired consumed the value";
}

TEST(Retire, BlockedReaderInAThreadAndInMainWoken) {
  csp::Channel<int> ch;
  auto w = ch.writer();
  auto thread_reader = csp::Spawn(csp::thread_process(
      [](csp::Reader<int> in) {
        try {
          in.read();
        } catch (const csp::ChannelRetired&) {
          return true;
        }
        return false;
      },
      ch.reader()));
  auto retirer = csp::Spawn(csp::process(
      [](csp::Writer<int> out) {
        for (int i = 0; i < 50; ++i) csp::yield();
        out.retire();
      },
      w));
  w = {};  // only the retirer's copy is left
  EXPECT_THROW(ch.reader().read(), csp::ChannelRetired);
  EXPECT_TRUE(thread_reader.join());
  retirer.join();
}

// ---------------------------------------------------------------------------
// A side that never had a member has not retired

TEST(Retire, SideWithoutMembersYetHasNotRetired) {
  csp::Channel<int> buffered{csp::buffer(2)};
  auto w = buffered.writer();
  EXPECT_NO_THROW(w.write(1)) << "no reader yet is not 'every reader retired'";
  EXPECT_TRUE(w.try_write(2));

  csp::Channel<int> unbuffered;
  auto uw = unbuffered.writer();
  EXPECT_FALSE(uw.try_write(1)) << "no reader yet: nobody takes it, but it is not retired";
  EXPECT_FALSE(uw.write_for(1, 2ms));

  csp::Channel<int> unwritten;
  auto ur = unwritten.reader();
  EXPECT_FALSE(ur.try_read().has_value()) << "no writer yet is not 'every writer retired'";
  EXPECT_FALSE(ur.read_for(2ms).has_value());
}

TEST(Retire, ChannelHandleIsNoMember) {
  csp::Channel<int> ch{csp::buffer(1)};
  auto r = ch.reader();
  ch.writer().write(1);  // a temporary end: joins, writes, leaves
  // The Channel handle `ch` is still alive, but it is no writer.
  EXPECT_EQ(r.read(), 1);
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

// ---------------------------------------------------------------------------
// Propagation through process arguments

TEST(RetirePropagation, ProcessEndingByRetiredRetiresItsArgumentEnds) {
  csp::Channel<int> in{csp::buffer(3)}, out{"downstream", csp::buffer(8)};
  auto in_w = in.writer();
  for (int i = 0; i < 3; ++i) in_w.write(i);
  in_w.retire();
  // The test keeps a copy of the process's writer end: destroying the
  // process's copy alone would not retire it; only the explicit retire of
  // the propagation does.
  csp::Writer<int> kept = out.writer();
  auto r = out.reader();
  csp::Parallel(csp::process(
      [](csp::Reader<int> from, csp::Writer<int> to) {
        for (;;) to.write(from.read() * 10);  // ends by ChannelRetired
      },
      in.reader(), kept));
  EXPECT_THROW(kept.write(99), csp::ChannelRetired) << "the argument end was not retired";
  std::vector<int> got;
  for (int v : r) got.push_back(v);  // ends: the only writer end retired
  EXPECT_EQ(got, (std::vector<int>{0, 10, 20}));
}

TEST(RetirePropagation, ProcessEndingNormallyLeavesSharedEndsAlone) {
  csp::Channel<int> ch{csp::buffer(2)};
  csp::Writer<int> kept = ch.writer();
  auto r = ch.reader();
  csp::Parallel(csp::process([](csp::Writer<int> to) { to.write(1); }, kept));
  EXPECT_NO_THROW(kept.write(2)) << "a normal end retired an end the caller still holds";
  EXPECT_EQ(r.read(), 1);
  EXPECT_EQ(r.read(), 2);
}

TEST(RetirePropagation, ProcessEndsLeaveTheirSidesWhenTheProcessFinishes) {
  // RAII: a process's ends are destroyed as it finishes, before Parallel
  // returns and before its siblings end.
  csp::Channel<int> ch;
  auto [unused, n] = csp::Parallel(csp::process(
                                       [](csp::Writer<int> out) {
                                         for (int i = 0; i < 3; ++i) out.write(i);
                                       },
                                       ch.writer()),
                                   csp::process(
                                       [](csp::Reader<int> in) {
                                         int count = 0;
                                         for (int v : in) (void)v, ++count;
                                         return count;
                                       },
                                       ch.reader()));
  (void)unused;
  EXPECT_EQ(n, 3);
}

TEST(RetirePropagation, ProcessTimesNGivesEachCopyItsOwnEnd) {
  csp::Channel<int> ch;
  auto writer = csp::process(
      [](csp::Writer<int> out) {
        for (int i = 0; i < 10; ++i) out.write(1);
      },
      ch.writer());
  auto [unused, total] = csp::Parallel(std::move(writer) * 3, csp::process(
                                                                  [](csp::Reader<int> in) {
                                                                    int sum = 0;
                                                                    for (int v : in) sum += v;
                                                                    return sum;
                                                                  },
                                                                  ch.reader()));
  (void)unused;
  EXPECT_EQ(total, 30) << "the reader stopped before every copy's end retired";
}

TEST(RetirePropagation, ReadersTimesNRetireOneByOne) {
  csp::Channel<int> ch;
  auto reader = csp::process(
      [](csp::Reader<int> in) {
        in.read();  // each copy reads one value and leaves
      },
      ch.reader());
  auto [unused, written] = csp::Parallel(std::move(reader) * 4, csp::process(
                                                                    [](csp::Writer<int> out) {
                                                                      int n = 0;
                                                                      try {
                                                                        for (;;) out.write(n), ++n;
                                                                      } catch (const csp::ChannelRetired&) {
                                                                      }
                                                                      return n;
                                                                    },
                                                                    ch.writer()));
  (void)unused;
  EXPECT_EQ(written, 4) << "the writer must see retirement exactly when the fourth reader left";
}

}  // namespace
