// Tests of poison (csp/channel.hpp, DESIGN §3) and its propagation through
// csp::process arguments (csp/process.hpp): blocked and later operations
// throw ChannelPoisoned on every end, poison is permanent and wins over
// retire, and a network shuts down when one of its channels is poisoned.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// What ended an operation, for processes to report back.
enum class Outcome { value, poisoned, retired, other };

template <class F>
Outcome outcome_of(F&& f) {
  try {
    f();
    return Outcome::value;
  } catch (const csp::ChannelPoisoned&) {
    return Outcome::poisoned;
  } catch (const csp::ChannelRetired&) {
    return Outcome::retired;
  } catch (...) {
    return Outcome::other;
  }
}

/// Lets other processes run for a while: makes it likely that processes
/// which announced they are about to block have blocked. The tests below
/// are correct either way (a later operation throws the same), this only
/// makes them exercise the blocked case.
void let_others_block() {
  for (int i = 0; i < 50; ++i) csp::yield();
}

// ---------------------------------------------------------------------------
// Blocked operations

TEST(Poison, WakesThreeBlockedReadersInEveryContext) {
  csp::Channel<int> ch{"doomed"};
  csp::Channel<int> ready{csp::buffer(3)};
  auto reader = [](csp::Reader<int> in, csp::Writer<int> ready_out) {
    ready_out.write(1);
    return outcome_of([&] { in.read(); });
  };
  auto r1 = csp::Spawn(csp::process(reader, ch.reader(), ready.writer()));
  auto r2 = csp::Spawn(csp::thread_process(reader, ch.reader(), ready.writer()));
  auto poisoner = csp::Spawn(csp::process(
      [](csp::Reader<int> ready_in, csp::Channel<int> target) {
        for (int i = 0; i < 3; ++i) ready_in.read();
        let_others_block();
        target.poison();
      },
      ready.reader(), ch));  // a Channel lvalue as an argument (copied)
  // main is the third reader.
  Outcome main_outcome = reader(ch.reader(), ready.writer());
  EXPECT_EQ(main_outcome, Outcome::poisoned);
  EXPECT_EQ(r1.join(), Outcome::poisoned);
  EXPECT_EQ(r2.join(), Outcome::poisoned);
  poisoner.join();
}

TEST(Poison, WakesThreeBlockedReaderProcesses) {
  csp::Channel<int> ch;
  csp::Channel<int> ready{csp::buffer(3)};
  auto reader = [](csp::Reader<int> in, csp::Writer<int> ready_out) {
    ready_out.write(1);
    return outcome_of([&] { in.read(); });
  };
  auto results = csp::Parallel(
      csp::process(reader, ch.reader(), ready.writer()), csp::process(reader, ch.reader(), ready.writer()),
      csp::process(reader, ch.reader(), ready.writer()), csp::process(
                                                             [](csp::Reader<int> ready_in, csp::Writer<int> w) {
                                                               for (int i = 0; i < 3; ++i) ready_in.read();
                                                               let_others_block();
                                                               w.poison();
                                                             },
                                                             ready.reader(), ch.writer()));
  // Ended by poison, a process's result is R{}: Outcome::value (0). The
  // readers caught it themselves, so theirs is the real outcome.
  EXPECT_EQ(std::get<0>(results), Outcome::poisoned);
  EXPECT_EQ(std::get<1>(results), Outcome::poisoned);
  EXPECT_EQ(std::get<2>(results), Outcome::poisoned);
}

TEST(Poison, WakesThreeBlockedWriters) {
  csp::Channel<int> ch{csp::buffer(1)};
  csp::Channel<int> ready{csp::buffer(3)};
  auto w0 = ch.writer();
  w0.write(0);  // full: every further write blocks
  auto writer = [](csp::Writer<int> out, csp::Writer<int> ready_out) {
    ready_out.write(1);
    return outcome_of([&] { out.write(1); });
  };
  auto results = csp::Parallel(csp::process(writer, ch.writer(), ready.writer()),
                               csp::thread_process(writer, ch.writer(), ready.writer()),
                               csp::process(writer, ch.writer(), ready.writer()),
                               csp::process(
                                   [](csp::Reader<int> ready_in, csp::Reader<int> r) {
                                     for (int i = 0; i < 3; ++i) ready_in.read();
                                     let_others_block();
                                     r.poison();  // poison through a reader end
                                   },
                                   ready.reader(), ch.reader()));
  EXPECT_EQ(std::get<0>(results), Outcome::poisoned);
  EXPECT_EQ(std::get<1>(results), Outcome::poisoned);
  EXPECT_EQ(std::get<2>(results), Outcome::poisoned);
}

TEST(Poison, WakesATimedRead) {
  csp::Channel<int> ch;
  auto w = ch.writer();
  auto [outcome, unused] = csp::Parallel(
      csp::process([](csp::Reader<int> in) { return outcome_of([&] { in.read_for(60s); }); }, ch.reader()),
      csp::process([](csp::Writer<int> out) {
        let_others_block();
        out.poison();
      }, w));
  (void)unused;
  EXPECT_EQ(outcome, Outcome::poisoned);
}

// ---------------------------------------------------------------------------
// Later operations

TEST(Poison, EveryLaterOperationOnEveryEndThrows) {
  csp::Channel<int> ch{"poisoned-later"};
  auto r = ch.reader();
  auto w = ch.writer();
  w.poison();
  EXPECT_THROW(r.read(), csp::ChannelPoisoned);
  EXPECT_THROW(r.try_read(), csp::ChannelPoisoned);
  EXPECT_THROW(r.read_for(1ms), csp::ChannelPoisoned);
  EXPECT_THROW(w.write(1), csp::ChannelPoisoned);
  EXPECT_THROW(w.try_write(1), csp::ChannelPoisoned);
  EXPECT_THROW(w.write_for(1, 1ms), csp::ChannelPoisoned);
  // Ends made after the poison, too.
  EXPECT_THROW(ch.reader().read(), csp::ChannelPoisoned);
  EXPECT_THROW(ch.writer().write(2), csp::ChannelPoisoned);
  // From another context.
  auto [outcome] = csp::Parallel(csp::thread_process(
      [](csp::Reader<int> in) { return outcome_of([&] { in.read(); }); }, ch.reader()));
  EXPECT_EQ(outcome, Outcome::poisoned);
}

TEST(Poison, MessageNamesTheChannel) {
  csp::Channel<int> ch{"toxic"};
  auto r = ch.reader();
  ch.poison();
  try {
    r.read();
    FAIL() << "no ChannelPoisoned";
  } catch (const csp::ChannelPoisoned& e) {
    EXPECT_NE(std::string(e.what()).find("toxic"), std::string::npos) << e.what();
  }
}

TEST(Poison, DiscardsBufferedValues) {
  csp::Channel<int> ch{csp::buffer(4)};
  auto r = ch.reader();
  auto w = ch.writer();
  w.write(1);
  w.write(2);
  ch.poison();
  EXPECT_THROW(r.read(), csp::ChannelPoisoned) << "a poisoned channel handed out a buffered value";
}

TEST(Poison, IsPermanentAndIdempotent) {
  csp::Channel<int> ch;
  auto r = ch.reader();
  auto w = ch.writer();
  ch.poison();
  r.poison();
  w.poison();
  for (int i = 0; i < 3; ++i) EXPECT_THROW(r.read(), csp::ChannelPoisoned);
}

TEST(Poison, FailedWriteLeavesTheValueWithTheCaller) {
  csp::Channel<std::unique_ptr<int>> ch;
  auto r = ch.reader();
  auto w = ch.writer();
  ch.poison();
  auto p = std::make_unique<int>(3);
  EXPECT_THROW(w.write(std::move(p)), csp::ChannelPoisoned);
  ASSERT_TRUE(p) << "a write that threw ChannelPoisoned consumed the value";
  EXPECT_THROW(w.try_write(std::move(p)), csp::ChannelPoisoned);
  ASSERT_TRUE(p) << "a try_write that threw ChannelPoisoned consumed the value";
}

TEST(Poison, BlockedWriterKeepsItsValueWhenPoisoned) {
  // Blocked writer poisoned while waiting: nothing is half-sent, the value
  // comes back with the exception path.
  csp::Channel<std::unique_ptr<int>> ch;
  auto r = ch.reader();
  auto [kept, unused] = csp::Parallel(csp::process(
                                          [](csp::Writer<std::unique_ptr<int>> out) {
                                            auto p = std::make_unique<int>(4);
                                            try {
                                              out.write(std::move(p));
                                            } catch (const csp::ChannelPoisoned&) {
                                            }
                                            return p != nullptr;
                                          },
                                          ch.writer()),
                                      csp::process([](csp::Reader<std::unique_ptr<int>> in) {
                                        let_others_block();
                                        in.poison();
                                      }, r));
  (void)unused;
  EXPECT_TRUE(kept) << "a write interrupted by poison consumed the value";
}

// ---------------------------------------------------------------------------
// Poison wins over retire

TEST(Poison, WinsOverRetireOfTheWriters) {
  csp::Channel<int> ch{csp::buffer(2)};
  auto r = ch.reader();
  {
    auto w = ch.writer();
    w.write(1);
  }  // every writer left: the reader would see ChannelRetired after the value
  ch.poison();
  EXPECT_THROW(r.read(), csp::ChannelPoisoned);
  EXPECT_THROW(r.read(), csp::ChannelPoisoned);
}

TEST(Poison, StaysAfterRetire) {
  csp::Channel<int> ch;
  auto r = ch.reader();
  auto w = ch.writer();
  ch.poison();
  w.retire();
  EXPECT_THROW(r.read(), csp::ChannelPoisoned) << "retire replaced poison";
  r.retire();
  EXPECT_THROW(r.read(), csp::ChannelPoisoned) << "a retired end of a poisoned channel must say poisoned";
  EXPECT_THROW(w.write(1), csp::ChannelPoisoned);
}

TEST(Poison, WinsOverRetireForABlockedReader) {
  // The reader blocks; the writer side retires and the channel is poisoned
  // in one go (poison first): the reader sees poison.
  csp::Channel<int> ch;
  auto [outcome, unused] = csp::Parallel(
      csp::process([](csp::Reader<int> in) { return outcome_of([&] { in.read(); }); }, ch.reader()),
      csp::process([](csp::Writer<int> out) {
        let_others_block();
        out.poison();
        out.retire();
      }, ch.writer()));
  (void)unused;
  EXPECT_EQ(outcome, Outcome::poisoned);
}

// ---------------------------------------------------------------------------
// Propagation through process arguments

TEST(PoisonPropagation, ProcessEndingByPoisonPoisonsItsArgumentEnds) {
  csp::Channel<int> in{"in"}, out1{"out1"}, out2{"out2"};
  std::vector<csp::Writer<int>> more;
  csp::Channel<int> extra{"extra"};
  more.push_back(extra.writer());
  in.poison();
  auto [result] = csp::Parallel(csp::process(
      [](csp::Reader<int> r, csp::Writer<int> w1, csp::Writer<int> w2, std::vector<csp::Writer<int>>) {
        for (;;) {
          int v = r.read();  // throws ChannelPoisoned
          w1.write(v);
          w2.write(v);
        }
        return 5;
      },
      in.reader(), out1.writer(), out2.writer(), more));
  EXPECT_EQ(result, 0) << "a process ended by poison returns R{}";
  EXPECT_THROW(out1.reader().try_read(), csp::ChannelPoisoned);
  EXPECT_THROW(out2.reader().try_read(), csp::ChannelPoisoned);
  EXPECT_THROW(extra.reader().try_read(), csp::ChannelPoisoned) << "ends inside a vector argument were not poisoned";
}

TEST(PoisonPropagation, OtherExceptionPoisonsArgumentsAndIsRethrown) {
  csp::Channel<int> ch{"to-failing"};
  std::atomic<bool> downstream_poisoned{false};
  try {
    csp::Parallel(csp::process(
                      [](csp::Writer<int> out) {
                        out.write(1);
                        throw std::runtime_error("producer failed");
                      },
                      ch.writer()),
                  csp::process(
                      [&](csp::Reader<int> in) {
                        in.read();
                        try {
                          in.read();  // the failing producer poisons the channel
                        } catch (const csp::ChannelPoisoned&) {
                          downstream_poisoned = true;
                          throw;
                        }
                      },
                      ch.reader()));
    FAIL() << "Parallel did not rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "producer failed");
  }
  EXPECT_TRUE(downstream_poisoned.load());
}

void source(csp::Writer<long> out, std::atomic<long>* produced) {
  for (long i = 0;; ++i) {
    out.write(i);
    ++*produced;
  }
}
void relay(csp::Reader<long> in, csp::Writer<long> out) {
  for (;;) out.write(in.read() + 1);
}
void sink(csp::Reader<long> in, csp::Writer<int> progress, std::atomic<long>* consumed) {
  for (long n = 1;; ++n) {
    long v = in.read();
    if (v != n - 1 + 3) throw std::logic_error("pipeline reordered or lost a value");
    ++*consumed;
    if (n == 1000) progress.write(1);
  }
}

TEST(PoisonPropagation, PoisoningOneChannelShutsDownAFiveStagePipeline) {
  for (int middle = 0; middle < 4; ++middle) {
    SCOPED_TRACE("poisoned channel c" + std::to_string(middle));
    std::vector<csp::Channel<long>> c;
    for (int i = 0; i < 4; ++i) c.emplace_back("c" + std::to_string(i));
    csp::Channel<int> progress{"progress"};
    std::atomic<long> produced{0}, consumed{0};
    csp::Parallel(csp::process(source, c[0].writer(), &produced).named("source"),
                  csp::process(relay, c[0].reader(), c[1].writer()).named("relay1"),
                  csp::process(relay, c[1].reader(), c[2].writer()).named("relay2"),
                  csp::process(relay, c[2].reader(), c[3].writer()).named("relay3"),
                  csp::process(sink, c[3].reader(), progress.writer(), &consumed).named("sink"),
                  csp::process(
                      [](csp::Reader<int> p, csp::Channel<long> victim) {
                        p.read();
                        victim.poison();
                      },
                      progress.reader(), c[middle])
                      .named("killer"));
    // Parallel returned: every stage ended. Poison is no error.
    EXPECT_GE(consumed.load(), 1000);
    EXPECT_GE(produced.load(), consumed.load());
    for (auto& ch : c) EXPECT_THROW(ch.reader().try_read(), csp::ChannelPoisoned) << ch.name();
  }
}

TEST(PoisonPropagation, PipelineOfThreadsAndProcessesShutsDownFromTheSink) {
  std::vector<csp::Channel<long>> c;
  for (int i = 0; i < 4; ++i) c.emplace_back("t" + std::to_string(i));
  std::atomic<long> produced{0};
  csp::Parallel(csp::thread_process(source, c[0].writer(), &produced),
                csp::process(relay, c[0].reader(), c[1].writer()),
                csp::thread_process(relay, c[1].reader(), c[2].writer()),
                csp::process(relay, c[2].reader(), c[3].writer()),
                csp::process(
                    [](csp::Reader<long> in) {
                      for (int i = 0; i < 500; ++i) in.read();
                      in.poison();
                    },
                    c[3].reader()));
  EXPECT_GE(produced.load(), 500);
}

}  // namespace
