// Any-to-any channels under load (csp/channel.hpp): many writers and many
// readers on one channel; every value is delivered exactly once, the sum
// matches, and the values of one writer reach any one reader in the order
// written. Rendezvous, buffered, timed and polling variants, coroutines and
// threads mixed. Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <chrono>
#include <csp/csp.hpp>
#include <cstdint>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using Value = std::uint32_t;  // writer * per_writer + sequence number

struct Load {
  int writers;
  int readers;
  int per_writer;
  int thread_writers = 0;  // how many of the writers are thread_processes
  int thread_readers = 0;  // how many of the readers are thread_processes
};

/// Checks what the readers received: each value exactly once, the
/// checksum, and per-writer order at each reader.
void check(const Load& load, const std::vector<std::vector<Value>>& received) {
  const std::size_t total = static_cast<std::size_t>(load.writers) * load.per_writer;
  std::vector<std::uint8_t> seen(total, 0);
  std::uint64_t sum = 0;
  std::size_t count = 0;
  for (std::size_t r = 0; r < received.size(); ++r) {
    std::vector<std::int64_t> last(load.writers, -1);
    for (Value v : received[r]) {
      ASSERT_LT(v, total) << "a value nobody wrote";
      const auto writer = v / load.per_writer;
      const std::int64_t seq = v % load.per_writer;
      ASSERT_GT(seq, last[writer]) << "reader " << r << " got writer " << writer << "'s values out of order";
      last[writer] = seq;
      ASSERT_EQ(seen[v]++, 0) << "value " << v << " delivered twice";
      sum += v;
      ++count;
    }
  }
  EXPECT_EQ(count, total) << "values were lost";
  EXPECT_EQ(sum, static_cast<std::uint64_t>(total) * (total - 1) / 2);
}

void write_all(csp::Writer<Value> out, int writer, int per_writer) {
  for (int i = 0; i < per_writer; ++i) out.write(static_cast<Value>(writer * per_writer + i));
}

std::vector<Value> read_all(csp::Reader<Value> in) {
  std::vector<Value> got;
  for (Value v : in) got.push_back(v);
  return got;
}

void run(const Load& load, csp::Channel<Value> ch) {
  std::vector<csp::Process<void>> writers;
  std::vector<csp::Process<std::vector<Value>>> readers;
  for (int w = 0; w < load.writers; ++w)
    writers.push_back(w < load.thread_writers ? csp::thread_process(write_all, ch.writer(), w, load.per_writer)
                                              : csp::process(write_all, ch.writer(), w, load.per_writer));
  for (int r = 0; r < load.readers; ++r)
    readers.push_back(r < load.thread_readers ? csp::thread_process(read_all, ch.reader())
                                              : csp::process(read_all, ch.reader()));
  auto [unused, received] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  check(load, received);
}

TEST(AnyToAny, EightWritersEightReadersHundredThousandValuesEach) {
  run(Load{8, 8, 100000}, csp::Channel<Value>{"any2any"});
}

TEST(AnyToAny, BufferedEightByEight) {
  run(Load{8, 8, 100000}, csp::Channel<Value>{"any2any-buffered", csp::buffer(16)});
}

TEST(AnyToAny, ThreadsAndCoroutinesMixed) {
  run(Load{8, 8, 20000, 2, 2}, csp::Channel<Value>{"mixed"});
}

TEST(AnyToAny, ThreadsAndCoroutinesMixedBuffered) {
  run(Load{8, 8, 20000, 3, 3}, csp::Channel<Value>{"mixed-buffered", csp::buffer(4)});
}

TEST(AnyToAny, OneWriterEndSharedByEveryWriter) {
  // Copies of one end are one member: the side retires only when the last
  // process holding a copy has finished.
  constexpr int writers = 8, per_writer = 20000;
  csp::Channel<Value> ch{"shared-end"};
  auto end = ch.writer();
  std::vector<csp::Process<void>> ws;
  for (int w = 0; w < writers; ++w) ws.push_back(csp::process(write_all, end, w, per_writer));
  end = {};
  std::vector<csp::Process<std::vector<Value>>> rs;
  for (int r = 0; r < 4; ++r) rs.push_back(csp::process(read_all, ch.reader()));
  auto [unused, received] = csp::Parallel(std::move(ws), std::move(rs));
  (void)unused;
  check(Load{writers, 4, per_writer}, received);
}

TEST(AnyToAny, TimedOutWritesAndEmptyPollsLoseAndDuplicateNothing) {
  // Writers retry write_for with a short deadline, readers poll with
  // try_read and read_for: a write that timed out must not have been
  // delivered, a poll that found nothing must not have taken anything.
  constexpr int writers = 4, readers = 4, per_writer = 20000;
  csp::Channel<Value> ch{"timed"};
  std::vector<csp::Process<void>> ws;
  for (int w = 0; w < writers; ++w)
    ws.push_back(csp::process(
        [](csp::Writer<Value> out, int writer) {
          for (int i = 0; i < per_writer; ++i) {
            const Value v = static_cast<Value>(writer * per_writer + i);
            while (!out.write_for(v, 20us)) {
            }
          }
        },
        ch.writer(), w));
  std::vector<csp::Process<std::vector<Value>>> rs;
  for (int r = 0; r < readers; ++r)
    rs.push_back(csp::process(
        [](csp::Reader<Value> in, int r) {
          std::vector<Value> got;
          try {
            for (unsigned k = 0;; ++k) {
              auto v = (k + r) % 2 ? in.try_read() : in.read_for(30us);
              if (v) got.push_back(*v);
              else csp::yield();
            }
          } catch (const csp::ChannelRetired&) {
          }
          return got;
        },
        ch.reader(), r));
  auto [unused, received] = csp::Parallel(std::move(ws), std::move(rs));
  (void)unused;
  check(Load{writers, readers, per_writer}, received);
}

}  // namespace
