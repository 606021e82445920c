// Tests of csp/channel.hpp: Channel<T> and its ends (unbuffered), the
// blocking, non-blocking and timed operations, end identity, range-for, and
// every mix of contexts a channel connects: coroutines (on one worker or
// several), csp::thread_process threads and plain main.
//
// Buffers are in buffer_test.cpp, poison in poison_test.cpp, retire in
// retire_test.cpp. Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Names and ends

TEST(Channel, NameIsGivenOrGenerated) {
  csp::Channel<int> jobs{"jobs"};
  EXPECT_EQ(jobs.name(), "jobs");
  EXPECT_EQ(jobs.reader().name(), "jobs");
  EXPECT_EQ(jobs.writer().name(), "jobs");
  csp::Channel<int> from_string{std::string("results")};
  EXPECT_EQ(from_string.name(), "results");

  csp::Channel<int> a, b;
  EXPECT_FALSE(a.name().empty());
  EXPECT_FALSE(b.name().empty());
  EXPECT_NE(a.name(), b.name()) << "unnamed channels must be told apart in reports";
}

TEST(Channel, ExceptionsNameTheChannel) {
  csp::Channel<int> ch{"named-in-errors"};
  auto r = ch.reader();
  ch.poison();
  try {
    r.read();
    FAIL() << "read of a poisoned channel returned";
  } catch (const csp::Error& e) {  // ChannelPoisoned derives from csp::Error
    EXPECT_NE(std::string(e.what()).find("named-in-errors"), std::string::npos) << e.what();
  }
}

TEST(Channel, PlusAndMinusMakeEndsOfTheSameChannel) {
  csp::Channel<int> ch;
  csp::Reader<int> r = +ch;
  csp::Writer<int> w = -ch;
  EXPECT_TRUE(r);
  EXPECT_TRUE(w);
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> out) { out.write(41); }, std::move(w)),
                                     csp::process([](csp::Reader<int> in) { return in.read() + 1; }, std::move(r)));
  (void)unused;
  EXPECT_EQ(got, 42);
}

TEST(Channel, DefaultConstructedEndsAreEmpty) {
  csp::Reader<int> r;
  csp::Writer<int> w;
  EXPECT_FALSE(r);
  EXPECT_FALSE(w);
}

TEST(Channel, CopiesOfAChannelHandleShareTheChannel) {
  csp::Channel<std::string> ch{"shared"};
  csp::Channel<std::string> copy = ch;
  EXPECT_EQ(copy.name(), "shared");
  auto [unused, got] = csp::Parallel(
      csp::process([](csp::Writer<std::string> out) { out.write("through the copy"); }, copy.writer()),
      csp::process([](csp::Reader<std::string> in) { return in.read(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, "through the copy");
}

TEST(Channel, EndsOutliveTheChannelHandle) {
  csp::Reader<int> r;
  csp::Writer<int> w;
  {
    csp::Channel<int> ch;
    r = ch.reader();
    w = ch.writer();
  }
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> out) { out.write(7); }, std::move(w)),
                                     csp::process([](csp::Reader<int> in) { return in.read(); }, std::move(r)));
  (void)unused;
  EXPECT_EQ(got, 7);
}

TEST(Channel, CopiesOfAnEndAreTheSameEnd) {
  csp::Channel<int> ch{"copies"};
  auto r = ch.reader();
  auto w = ch.writer();
  csp::Writer<int> w_copy = w;
  w_copy.retire();  // retiring through one copy retires the end
  EXPECT_THROW(w.write(1), csp::ChannelRetired);
  EXPECT_THROW(w.try_write(1), csp::ChannelRetired);
  // It was the only writer end: the reader side sees the writers retired.
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

TEST(Channel, EachWriterCallMakesANewMember) {
  csp::Channel<int> ch{csp::buffer(4)};
  auto r = ch.reader();
  auto w1 = ch.writer();
  auto w2 = ch.writer();
  w1.write(1);
  w1.retire();  // w2 is still a member: the writer side has not retired
  w2.write(2);
  EXPECT_EQ(r.read(), 1);
  EXPECT_EQ(r.read(), 2);
  EXPECT_FALSE(r.try_read().has_value()) << "w2 still a member: no value, but no retirement either";
  w2.retire();
  EXPECT_THROW(r.read(), csp::ChannelRetired);
}

// ---------------------------------------------------------------------------
// Rendezvous

TEST(Channel, WriteReturnsOnlyAfterAReaderCameForTheValue) {
  csp::Channel<int> ch;
  std::mutex m;
  std::vector<std::string> log;
  auto note = [&](std::string s) {
    std::lock_guard lock(m);
    log.push_back(std::move(s));
  };
  csp::Parallel(csp::process(
                    [&](csp::Writer<int> out) {
                      out.write(1);
                      note("write returned");
                    },
                    ch.writer()),
                csp::process(
                    [&](csp::Reader<int> in) {
                      csp::yield();
                      note("read called");
                      EXPECT_EQ(in.read(), 1);
                    },
                    ch.reader()));
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], "read called") << "an unbuffered write completed before any reader came";
}

TEST(Channel, ValuesArriveInOrder) {
  csp::Channel<int> ch;
  constexpr int n = 10000;
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

TEST(Channel, CallOperatorsReadAndWrite) {  // PyCSP's cin() / cout(v)
  csp::Channel<int> ch;
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> out) { out(5); }, ch.writer()),
                                     csp::process([](csp::Reader<int> in) { return in(); }, ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 5);
}

TEST(Channel, CarriesNonTrivialAndMoveOnlyValues) {
  csp::Channel<std::vector<std::string>> strings;
  csp::Channel<std::unique_ptr<int>> boxes;
  auto [a, b, got_strings, got_box] = csp::Parallel(
      csp::process([](csp::Writer<std::vector<std::string>> out) { out.write({"a", "bb", std::string(1000, 'c')}); },
                   strings.writer()),
      csp::process([](csp::Writer<std::unique_ptr<int>> out) { out.write(std::make_unique<int>(99)); },
                   boxes.writer()),
      csp::process([](csp::Reader<std::vector<std::string>> in) { return in.read(); }, strings.reader()),
      csp::process([](csp::Reader<std::unique_ptr<int>> in) { return *in.read(); }, boxes.reader()));
  (void)a;
  (void)b;
  ASSERT_EQ(got_strings.size(), 3u);
  EXPECT_EQ(got_strings[2], std::string(1000, 'c'));
  EXPECT_EQ(got_box, 99);
}

// ---------------------------------------------------------------------------
// try_read / try_write / read_for / write_for

TEST(Channel, TryOperationsDoNotBlockWithoutAPeer) {
  csp::Channel<int> ch;
  auto r = ch.reader();
  auto w = ch.writer();
  EXPECT_FALSE(r.try_read().has_value());
  EXPECT_FALSE(w.try_write(1)) << "an unbuffered try_write with no reader waiting must fail";
  EXPECT_FALSE(r.try_read().has_value()) << "the failed try_write left nothing behind";
}

TEST(Channel, TryReadTakesFromABlockedWriter) {
  csp::Channel<int> ch;
  auto [unused, got] = csp::Parallel(csp::process([](csp::Writer<int> out) { out.write(3); }, ch.writer()),
                                     csp::process(
                                         [](csp::Reader<int> in) {
                                           std::optional<int> v;
                                           while (!(v = in.try_read())) csp::yield();  // until the writer waits
                                           return *v;
                                         },
                                         ch.reader()));
  (void)unused;
  EXPECT_EQ(got, 3);
}

TEST(Channel, TryWriteHandsToABlockedReader) {
  csp::Channel<int> ch;
  auto [attempts, got] = csp::Parallel(csp::process(
                                           [](csp::Writer<int> out) {
                                             int tries = 1;
                                             while (!out.try_write(4)) {
                                               csp::yield();  // until the reader waits
                                               ++tries;
                                             }
                                             return tries;
                                           },
                                           ch.writer()),
                                       csp::process([](csp::Reader<int> in) { return in.read(); }, ch.reader()));
  EXPECT_GE(attempts, 1);
  EXPECT_EQ(got, 4);
}

// ---------------------------------------------------------------------------
// Timed operations, from every kind of context

enum class Ctx { main, process, thread };
const char* to_string(Ctx c) {
  switch (c) {
    case Ctx::main: return "main";
    case Ctx::process: return "process";
    case Ctx::thread: return "thread";
  }
  return "?";
}

/// Runs f() in context `c` and returns its result.
template <class F>
auto run_in(Ctx c, F f) -> decltype(f()) {
  using R = decltype(f());
  if (c == Ctx::main) return f();
  auto p = c == Ctx::process ? csp::process(f) : csp::thread_process(f);
  if constexpr (std::is_void_v<R>) {
    csp::Parallel(std::move(p));
  } else {
    return std::get<0>(csp::Parallel(std::move(p)));
  }
}

class TimedOps : public ::testing::TestWithParam<Ctx> {};

TEST_P(TimedOps, ReadForTimesOutAfterTheDuration) {
  csp::Channel<int> ch{"quiet"};
  auto w = ch.writer();  // a writer exists: the reader waits instead of seeing retirement
  auto r = ch.reader();
  auto [value, elapsed] = run_in(GetParam(), [&] {
    auto t0 = Clock::now();
    auto v = r.read_for(20ms);
    return std::make_pair(v, Clock::now() - t0);
  });
  EXPECT_FALSE(value.has_value());
  EXPECT_GE(elapsed, 20ms);
  EXPECT_LT(elapsed, 20ms + 10s);  // hang guard only
}

TEST_P(TimedOps, WriteForTimesOutAfterTheDuration) {
  csp::Channel<int> ch{"unread"};
  auto r = ch.reader();  // a reader exists but never reads
  auto w = ch.writer();
  auto [sent, elapsed] = run_in(GetParam(), [&] {
    auto t0 = Clock::now();
    bool ok = w.write_for(5, 20ms);
    return std::make_pair(ok, Clock::now() - t0);
  });
  EXPECT_FALSE(sent);
  EXPECT_GE(elapsed, 20ms);
  EXPECT_LT(elapsed, 20ms + 10s);
  EXPECT_FALSE(r.try_read().has_value()) << "a timed-out write left its value in the channel";
}

TEST_P(TimedOps, ZeroAndPastDeadlinesActLikeTry) {
  csp::Channel<int> ch;
  auto w = ch.writer();
  auto r = ch.reader();
  run_in(GetParam(), [&] {
    EXPECT_FALSE(r.read_for(0ms).has_value());
    EXPECT_FALSE(r.read_for(-5ms).has_value());
    EXPECT_FALSE(r.read_until(Clock::now() - 1s).has_value());
    EXPECT_FALSE(w.write_for(1, 0ms));
    EXPECT_FALSE(w.write_until(1, Clock::now() - 1s));
  });
  EXPECT_FALSE(r.try_read().has_value());
}

TEST_P(TimedOps, ReadForReturnsAValueThatComesInTime) {
  csp::Channel<int> ch;
  auto r = ch.reader();
  auto writer = csp::Spawn(csp::process([](csp::Writer<int> out) { out.write(11); }, ch.writer()));
  auto v = run_in(GetParam(), [&] { return r.read_for(60s); });  // generous: a hang guard, not a timing test
  writer.join();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, 11);
}

TEST_P(TimedOps, WriteForDeliversToAReaderThatComesInTime) {
  csp::Channel<int> ch;
  auto w = ch.writer();
  auto reader = csp::Spawn(csp::process([](csp::Reader<int> in) { return in.read(); }, ch.reader()));
  bool sent = run_in(GetParam(), [&] { return w.write_for(12, 60s); });
  EXPECT_TRUE(sent);
  EXPECT_EQ(reader.join(), 12);
}

TEST_P(TimedOps, WriteUntilAndReadUntilMeetBeforeTheDeadline) {
  csp::Channel<std::string> ch;
  auto w = ch.writer();
  auto reader = csp::Spawn(csp::process(
      [](csp::Reader<std::string> in) { return in.read_until(Clock::now() + 60s).value_or("timed out"); },
      ch.reader()));
  bool sent = run_in(GetParam(), [&] { return w.write_until("met", Clock::now() + 60s); });
  EXPECT_TRUE(sent);
  EXPECT_EQ(reader.join(), "met");
}

INSTANTIATE_TEST_SUITE_P(Contexts, TimedOps, ::testing::Values(Ctx::main, Ctx::process, Ctx::thread),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// ---------------------------------------------------------------------------
// A write that does not complete leaves the value with the caller.

TEST(Channel, FailedTryWriteLeavesAMoveOnlyValueWithTheCaller) {
  csp::Channel<std::unique_ptr<int>> ch{"keep"};
  auto r = ch.reader();
  auto w = ch.writer();
  auto p = std::make_unique<int>(7);
  EXPECT_FALSE(w.try_write(std::move(p)));
  ASSERT_TRUE(p) << "try_write failed but consumed the value: it is lost";
  EXPECT_EQ(*p, 7);
  EXPECT_FALSE(r.try_read().has_value());
}

TEST(Channel, TimedOutWriteLeavesAMoveOnlyValueWithTheCaller) {
  csp::Channel<std::unique_ptr<int>> ch{"keep"};
  auto r = ch.reader();
  auto w = ch.writer();
  auto p = std::make_unique<int>(8);
  EXPECT_FALSE(w.write_for(std::move(p), 5ms));
  ASSERT_TRUE(p) << "write_for timed out but consumed the value: it is lost";
  EXPECT_EQ(*p, 8);
  EXPECT_FALSE(w.write_until(std::move(p), Clock::now() + 1ms));
  ASSERT_TRUE(p) << "write_until timed out but consumed the value: it is lost";
  EXPECT_FALSE(r.try_read().has_value());
}

TEST(Channel, FailedWriteLeavesAMovedStringIntact) {
  csp::Channel<std::string> ch;
  auto r = ch.reader();
  auto w = ch.writer();
  std::string s(100, 'x');  // long: a move really steals the buffer
  EXPECT_FALSE(w.try_write(std::move(s)));
  EXPECT_EQ(s, std::string(100, 'x')) << "try_write failed but the caller's string was moved from";
}

// ---------------------------------------------------------------------------
// Range-for

TEST(Channel, RangeForStopsWhenTheWritersRetire) {
  csp::Channel<int> ch;
  auto results = csp::Parallel(csp::process(
                                   [](csp::Writer<int> out) {
                                     for (int i = 1; i <= 100; ++i) out.write(i);
                                   },
                                   ch.writer()),
                               csp::process(
                                   [](csp::Writer<int> out) {
                                     for (int i = 1; i <= 100; ++i) out.write(1000 * i);
                                   },
                                   ch.writer()),
                               csp::process(
                                   [](csp::Reader<int> in) {
                                     long sum = 0;
                                     for (int v : in) sum += v;
                                     return sum;
                                   },
                                   ch.reader()));
  EXPECT_EQ(std::get<2>(results), 5050L + 1000L * 5050);
}

TEST(Channel, BreakingOutOfRangeForLosesNoValue) {
  csp::Channel<int> ch{csp::buffer(10)};
  auto r = ch.reader();
  {
    auto w = ch.writer();
    for (int i = 0; i < 10; ++i) w.write(i);
  }
  for (int v : r)
    if (v == 4) break;
  EXPECT_EQ(r.read(), 5) << "range-for read ahead and dropped a value";
  std::vector<int> rest;
  for (int v : r) rest.push_back(v);
  EXPECT_EQ(rest, (std::vector<int>{6, 7, 8, 9}));
}

TEST(Channel, RangeForOverAPoisonedChannelThrows) {
  csp::Channel<int> ch{csp::buffer(2)};
  auto r = ch.reader();
  auto w = ch.writer();
  w.write(1);
  ch.poison();
  EXPECT_THROW(
      {
        for (int v : r) (void)v;
      },
      csp::ChannelPoisoned);
}

// ---------------------------------------------------------------------------
// Mixed contexts

/// Where one role of a test runs.
enum class Where { main, process, thread };
const char* name_of(Where w) { return w == Where::main ? "main" : w == Where::process ? "process" : "thread"; }

struct Received {
  long sum = 0;
  int count = 0;
  bool in_order = true;
};

Received read_all(csp::Reader<int> in) {
  Received got;
  int last = -1;
  for (int v : in) {
    got.sum += v;
    ++got.count;
    if (v <= last) got.in_order = false;
    last = v;
  }
  return got;
}

void write_n(csp::Writer<int> out, int n) {
  for (int i = 0; i < n; ++i) out.write(i);
}

/// One writer in `wr` and one reader in `rd`, n values.
void exchange(Where wr, Where rd, csp::Channel<int> ch, int n) {
  SCOPED_TRACE(std::string("writer in ") + name_of(wr) + ", reader in " + name_of(rd));
  std::optional<csp::Spawned<void>> writer;
  std::optional<csp::Spawned<Received>> reader;
  if (wr == Where::process) writer = csp::Spawn(csp::process(write_n, ch.writer(), n));
  if (wr == Where::thread) writer = csp::Spawn(csp::thread_process(write_n, ch.writer(), n));
  if (rd == Where::process) reader = csp::Spawn(csp::process(read_all, ch.reader()));
  if (rd == Where::thread) reader = csp::Spawn(csp::thread_process(read_all, ch.reader()));
  Received got;
  if (wr == Where::main) write_n(ch.writer(), n);  // the end leaves its side when the call returns
  if (rd == Where::main) got = read_all(ch.reader());
  if (writer) writer->join();
  if (reader) got = reader->join();
  EXPECT_EQ(got.count, n);
  EXPECT_EQ(got.sum, static_cast<long>(n) * (n - 1) / 2);
  EXPECT_TRUE(got.in_order);
}

TEST(Channel, EveryPairOfContextsExchangesValues) {
  for (Where wr : {Where::main, Where::process, Where::thread})
    for (Where rd : {Where::main, Where::process, Where::thread}) {
      if (wr == Where::main && rd == Where::main) continue;
      exchange(wr, rd, csp::Channel<int>{}, 2000);
      exchange(wr, rd, csp::Channel<int>{csp::buffer(3)}, 2000);
    }
}

TEST(Channel, CoroutinesStartedByOneProcessShareItsWorker) {
  // Children of a process start on its worker: with one worker this is a
  // same-worker exchange, with more the children may be stolen.
  auto [got] = csp::Parallel([] {
    csp::Channel<int> ch;
    auto [unused, r] = csp::Parallel(csp::process(write_n, ch.writer(), 5000), csp::process(read_all, ch.reader()));
    (void)unused;
    return r;
  });
  EXPECT_EQ(got.count, 5000);
  EXPECT_TRUE(got.in_order);
}

TEST(Channel, ProcessesOnDifferentWorkersExchangeValues) {
  // Processes started from main are spread round-robin over the workers.
  std::vector<csp::Process<void>> writers;
  std::vector<csp::Process<Received>> readers;
  csp::Channel<int> ch;
  constexpr int pairs = 8, n = 2000;
  for (int i = 0; i < pairs; ++i) {
    writers.push_back(csp::process(write_n, ch.writer(), n));
    readers.push_back(csp::process([](csp::Reader<int> in) {
      Received got;
      for (int v : in) got.sum += v, ++got.count;
      return got;
    }, ch.reader()));
  }
  auto [unused, got] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  long sum = 0;
  int count = 0;
  for (auto& g : got) sum += g.sum, count += g.count;
  EXPECT_EQ(count, pairs * n);
  EXPECT_EQ(sum, pairs * (static_cast<long>(n) * (n - 1) / 2));
}

TEST(Channel, WritersAndReadersInEveryContextAtOnce) {
  // Writers: main, a process, a thread_process and a process nested in a
  // process; readers: two processes and a thread. Each writer tags its
  // values so per-writer order and the total can be checked.
  constexpr int writers = 4, n = 3000;
  csp::Channel<int> ch{"mixed"};
  auto tagged = [](csp::Writer<int> out, int tag) {
    for (int i = 0; i < n; ++i) out.write(tag * n + i);
  };
  auto reader = [](csp::Reader<int> in) {
    std::vector<int> got;
    for (int v : in) got.push_back(v);
    return got;
  };
  // main's own writer end exists before any writer starts: otherwise a fast
  // first writer could finish and leave the writer side empty (retired)
  // before the next one joins, and the readers would end early.
  std::optional<csp::Writer<int>> mine{ch.writer()};
  auto r1 = csp::Spawn(csp::process(reader, ch.reader()));
  auto r2 = csp::Spawn(csp::process(reader, ch.reader()));
  auto r3 = csp::Spawn(csp::thread_process(reader, ch.reader()));
  auto w1 = csp::Spawn(csp::process(tagged, ch.writer(), 1));
  auto w2 = csp::Spawn(csp::thread_process(tagged, ch.writer(), 2));
  auto w3 = csp::Spawn(csp::process([&](csp::Writer<int> out) { csp::Parallel(csp::process(tagged, out, 3)); },
                                    ch.writer()));
  tagged(*mine, 0);
  mine.reset();
  w1.join();
  w2.join();
  w3.join();
  std::vector<int> seen(writers * n, 0);
  for (auto* r : {&r1, &r2, &r3}) {
    std::vector<int> last(writers, -1);
    for (int v : r->join()) {
      ASSERT_GE(v, 0);
      ASSERT_LT(v, writers * n);
      ++seen[v];
      EXPECT_GT(v, last[v / n]) << "values of one writer arrived out of order at one reader";
      last[v / n] = v;
    }
  }
  for (int v = 0; v < writers * n; ++v) ASSERT_EQ(seen[v], 1) << "value " << v << " delivered " << seen[v] << " times";
}

TEST(Channel, ABlockedProcessDoesNotBlockItsWorker) {
  // With one worker, the reader parks and the writer, queued behind it on
  // the same worker, must still run.
  csp::Channel<int> ch;
  auto [got, unused] = csp::Parallel(csp::process([](csp::Reader<int> in) { return in.read(); }, ch.reader()),
                                     csp::process([](csp::Writer<int> out) { out.write(21); }, ch.writer()));
  (void)unused;
  EXPECT_EQ(got, 21);
}

}  // namespace
