// Tests of csp/buffer.hpp through Channel<T>: csp::buffer(n) (FIFO) and
// csp::priority_buffer(n[, less]). Capacity, order, blocking when full,
// hand-off to waiting readers, and buffered channels between contexts.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <chrono>
#include <csp/csp.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// FIFO buffer

TEST(Buffer, HoldsExactlyItsCapacity) {
  csp::Channel<int> ch{csp::buffer(3)};
  auto r = ch.reader();
  auto w = ch.writer();
  EXPECT_TRUE(w.try_write(1));
  EXPECT_TRUE(w.try_write(2));
  EXPECT_TRUE(w.try_write(3));
  EXPECT_FALSE(w.try_write(4)) << "a buffer of 3 took a fourth value";
  EXPECT_FALSE(w.write_for(4, 5ms));
  EXPECT_EQ(r.read(), 1);
  EXPECT_TRUE(w.try_write(4)) << "a read made room";
  EXPECT_EQ(r.read(), 2);
  EXPECT_EQ(r.read(), 3);
  EXPECT_EQ(r.read(), 4);
  EXPECT_FALSE(r.try_read().has_value());
  EXPECT_FALSE(r.read_for(5ms).has_value());
}

TEST(Buffer, WriteDoesNotWaitForAReaderWhileThereIsRoom) {
  // Plain write() from main with no reader running: must not block.
  csp::Channel<std::string> ch{"jobs", csp::buffer(2)};
  auto r = ch.reader();
  auto w = ch.writer();
  w.write("a");
  w.write("b");
  EXPECT_EQ(r.read(), "a");
  EXPECT_EQ(r.read(), "b");
}

TEST(Buffer, ZeroCapacityIsARendezvous) {
  csp::Channel<int> ch{csp::buffer(0)};
  auto r = ch.reader();
  auto w = ch.writer();
  EXPECT_FALSE(w.try_write(1)) << "buffer(0) must behave as an unbuffered channel";
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> out) { out.write(9); }, w),
                                     csp::process([](csp::Reader<int> in) { return in.read(); }, r));
  (void)unused;
  EXPECT_EQ(got, 9);
}

TEST(Buffer, BlockedWritersKeepFifoOrder) {
  // The buffer fills, the writer blocks, and every value still comes out in
  // the order written.
  csp::Channel<int> ch{csp::buffer(4)};
  constexpr int n = 20000;
  auto [unused, ok] = csp::Parallel(csp::process(
                                        [](csp::Writer<int> out) {
                                          for (int i = 0; i < n; ++i) out.write(i);
                                        },
                                        ch.writer()),
                                    csp::process(
                                        [](csp::Reader<int> in) {
                                          int expected = 0;
                                          for (int v : in)
                                            if (v != expected++) return false;
                                          return expected == n;
                                        },
                                        ch.reader()));
  (void)unused;
  EXPECT_TRUE(ok);
}

TEST(Buffer, WaitingReaderIsHandedTheValueDirectly) {
  // A reader already waiting takes the value; the buffer stays empty, so
  // afterwards all of its room is still there.
  csp::Channel<int> ch{csp::buffer(2)};
  auto w = ch.writer();
  auto keep_reader_side_open = ch.reader();
  auto reader = csp::Spawn(csp::process([](csp::Reader<int> in) { return in.read(); }, ch.reader()));
  // The reader may not be waiting yet; either way it gets exactly this value.
  w.write(5);
  EXPECT_EQ(reader.join(), 5);
  EXPECT_TRUE(w.try_write(6));
  EXPECT_TRUE(w.try_write(7));
  EXPECT_FALSE(w.try_write(8));
}

TEST(Buffer, WritesBeforeAnyReaderExists) {
  // A side that never had a member has not retired: the buffered channel
  // accepts writes before the first reader end is made.
  csp::Channel<int> ch{csp::buffer(3)};
  {
    auto w = ch.writer();
    w.write(1);
    w.write(2);
    EXPECT_TRUE(w.try_write(3));
    EXPECT_FALSE(w.try_write(4));
  }
  auto r = ch.reader();
  EXPECT_EQ(r.read(), 1);
  EXPECT_EQ(r.read(), 2);
  EXPECT_EQ(r.read(), 3);
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

TEST(Buffer, MoveOnlyValues) {
  csp::Channel<std::unique_ptr<int>> ch{csp::buffer(4)};
  auto r = ch.reader();
  auto w = ch.writer();
  for (int i = 0; i < 4; ++i) w.write(std::make_unique<int>(i));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*r.read(), i);
}

TEST(Buffer, TimedOutWriteToAFullBufferKeepsTheValue) {
  csp::Channel<std::unique_ptr<int>> ch{csp::buffer(1)};
  auto r = ch.reader();
  auto w = ch.writer();
  w.write(std::make_unique<int>(1));
  auto p = std::make_unique<int>(2);
  EXPECT_FALSE(w.write_for(std::move(p), 5ms));
  ASSERT_TRUE(p) << "a write to a full buffer timed out and the value is lost";
  EXPECT_FALSE(w.try_write(std::move(p)));
  ASSERT_TRUE(p) << "a try_write to a full buffer failed and the value is lost";
  EXPECT_EQ(*r.read(), 1);
  EXPECT_FALSE(r.try_read().has_value());
}

TEST(Buffer, ManyWritersAndReadersThroughASmallBuffer) {
  csp::Channel<int> ch{csp::buffer(2)};
  constexpr int writers = 4, readers = 4, n = 5000;
  std::vector<csp::Process<void>> ws;
  std::vector<csp::Process<long>> rs;
  for (int k = 0; k < writers; ++k)
    ws.push_back(csp::process(
        [](csp::Writer<int> out) {
          for (int i = 1; i <= n; ++i) out.write(i);
        },
        ch.writer()));
  for (int k = 0; k < readers; ++k)
    rs.push_back(csp::process(
        [](csp::Reader<int> in) {
          long sum = 0;
          for (int v : in) sum += v;
          return sum;
        },
        ch.reader()));
  auto [unused, sums] = csp::Parallel(std::move(ws), std::move(rs));
  (void)unused;
  long total = 0;
  for (long s : sums) total += s;
  EXPECT_EQ(total, writers * (static_cast<long>(n) * (n + 1) / 2));
}

TEST(Buffer, ThreadAndMainThroughABuffer) {
  csp::Channel<int> ch{csp::buffer(8)};
  auto w = ch.writer();
  auto reader = csp::Spawn(csp::thread_process(
      [](csp::Reader<int> in) {
        long sum = 0;
        for (int v : in) sum += v;
        return sum;
      },
      ch.reader()));
  for (int i = 1; i <= 10000; ++i) w.write(i);
  w.retire();
  EXPECT_EQ(reader.join(), 10000L * 10001 / 2);
}

// ---------------------------------------------------------------------------
// Priority buffer

TEST(PriorityBuffer, SmallestFirstByDefault) {
  csp::Channel<int> ch{csp::priority_buffer(5)};
  auto r = ch.reader();
  auto w = ch.writer();
  for (int v : {5, 1, 4, 2, 3}) EXPECT_TRUE(w.try_write(v));
  EXPECT_FALSE(w.try_write(0)) << "a priority buffer of 5 took a sixth value";
  for (int expected = 1; expected <= 5; ++expected) EXPECT_EQ(r.read(), expected);
  EXPECT_FALSE(r.try_read().has_value());
}

TEST(PriorityBuffer, GivenComparator) {
  csp::Channel<int> ch{csp::priority_buffer(4, std::greater<>{})};
  auto r = ch.reader();
  auto w = ch.writer();
  for (int v : {2, 9, 4, 7}) w.write(v);
  EXPECT_EQ(r.read(), 9);
  EXPECT_EQ(r.read(), 7);
  w.write(8);
  EXPECT_EQ(r.read(), 8);
  EXPECT_EQ(r.read(), 4);
  EXPECT_EQ(r.read(), 2);
}

struct Job {
  int priority;
  std::string name;
};

TEST(PriorityBuffer, LambdaComparatorOnAStruct) {
  auto urgent_first = [](const Job& a, const Job& b) { return a.priority > b.priority; };
  csp::Channel<Job> ch{"jobs", csp::priority_buffer(8, urgent_first)};
  EXPECT_EQ(ch.name(), "jobs");
  auto r = ch.reader();
  auto w = ch.writer();
  w.write(Job{1, "sweep"});
  w.write(Job{10, "fire"});
  w.write(Job{5, "mail"});
  EXPECT_EQ(r.read().name, "fire");
  EXPECT_EQ(r.read().name, "mail");
  EXPECT_EQ(r.read().name, "sweep");
}

TEST(PriorityBuffer, BlockedWriterEntersInPriorityOrder) {
  csp::Channel<int> ch{csp::priority_buffer(2)};
  auto r = ch.reader();
  auto w = ch.writer();
  w.write(5);
  w.write(3);
  // Blocks on the full buffer (if it runs before the first read) until the
  // first read makes room; once it has written, its value is ordered with
  // the buffered one.
  auto writer = csp::Spawn(csp::process([](csp::Writer<int> out) { out.write(1); }, w));
  EXPECT_EQ(r.read(), 3);
  writer.join();
  EXPECT_EQ(r.read(), 1) << "the blocked writer's value must be ordered with the buffered ones";
  EXPECT_EQ(r.read(), 5);
}

TEST(PriorityBuffer, ManyWritersDrainInOrderOnceFilled) {
  constexpr int n = 1000;
  csp::Channel<int> ch{csp::priority_buffer(n)};
  auto r = ch.reader();
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < 4; ++k)
    writers.push_back(csp::process(
        [k](csp::Writer<int> out) {
          for (int i = k; i < n; i += 4) out.write(n - 1 - i);
        },
        ch.writer()));
  csp::Parallel(std::move(writers));
  for (int expected = 0; expected < n; ++expected) ASSERT_EQ(r.read(), expected);
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

}  // namespace
