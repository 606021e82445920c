// The channel semantics of DESIGN §3 between OS processes, once per
// cross-process transport (shm, pipe, unix socket, TCP): every test runs
// os_process children against channels whose home is this process (and
// against each other), with the transport forced for the run.
//
// Synchronisation is by channels only; timeouts appear only where the test
// is about a timeout (read_for/write_for), never to wait for the other side.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <new>
#include <csp/csp.hpp>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "transport_test_util.hpp"

using namespace std::chrono_literals;
using csp::transport_detail::LinkKind;

namespace {

class Conformance : public csp_test::TransportTest {};

/// Values k * per_writer + i from writers k = 0, 1, ...: each must be the
/// next of its writer (i = 0, 1, ... in order).
class PerWriterOrder {
 public:
  PerWriterOrder(int writers, int per_writer) : per_writer_(per_writer), next_(writers, 0) {}
  /// Checks `v` and counts it for its writer.
  void take(int v) {
    const int k = v / per_writer_;
    EXPECT_EQ(v % per_writer_, next_[k]) << "writer " << k;
    next_[k] = v % per_writer_ + 1;
  }
  /// Values of writer k taken so far (the next one it must send).
  [[nodiscard]] int next(int k) const { return next_[k]; }

 private:
  int per_writer_;
  std::vector<int> next_;
};

// ---- rendezvous and data ------------------------------------------------------

TEST_P(Conformance, ChildWritesParentReads) {
  csp::Channel<int> ch;
  auto [unused, sum] = csp::Parallel(
      csp::os_process([](csp::Writer<int> out) { for (int i = 1; i <= 500; ++i) out.write(i); }, ch.writer()),
      csp::process([](csp::Reader<int> in) { long s = 0; for (int v : in) s += v; return s; }, ch.reader()));
  (void)unused;
  EXPECT_EQ(sum, 500L * 501 / 2);
}

TEST_P(Conformance, ParentWritesChildReadsInOrder) {
  csp::Channel<std::string> ch;
  auto [got, unused] = csp::Parallel(
      csp::os_process([](csp::Reader<std::string> in) {
        std::vector<std::string> all;
        for (std::string s : in) all.push_back(s);
        return all;
      }, ch.reader()),
      csp::process([](csp::Writer<std::string> out) { for (int i = 0; i < 100; ++i) out.write("v" + std::to_string(i)); },
                   ch.writer()));
  (void)unused;
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], "v" + std::to_string(i));
}

TEST_P(Conformance, ChildToChildThroughParentHome) {
  csp::Channel<long> ch;
  auto [a, total] = csp::Parallel(
      csp::os_process([](csp::Writer<long> out) { for (long i = 0; i < 300; ++i) out.write(i); }, ch.writer()),
      csp::os_process([](csp::Reader<long> in) { long s = 0; for (long v : in) s += v; return s; }, ch.reader()));
  (void)a;
  EXPECT_EQ(total, 299L * 300 / 2);
}

// An unbuffered write returns only once a reader took the value: the child
// cannot get past its write before the parent reads.
TEST_P(Conformance, UnbufferedWriteIsARendezvous) {
  csp::Channel<int> data, after;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal) {
    out.write(1);
    signal.write(2);
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal) {
    // Nothing on `signal` before we took the value.
    EXPECT_FALSE(signal.try_read().has_value());
    EXPECT_EQ(in.read(), 1);
    EXPECT_EQ(signal.read(), 2);
  };
  csp::Parallel(csp::os_process(child, data.writer(), after.writer()),
                csp::process(parent, data.reader(), after.reader()));
}

TEST_P(Conformance, LargeValuesCrossIntact) {
  csp::Channel<std::vector<std::uint32_t>> ch;
  auto child = [](csp::Reader<std::vector<std::uint32_t>> in, csp::Writer<std::vector<std::uint32_t>> out) {
    for (auto v : in) {
      for (auto& x : v) x += 1;
      out.write(std::move(v));
    }
  };
  csp::Channel<std::vector<std::uint32_t>> back;
  auto parent = [](csp::Writer<std::vector<std::uint32_t>> out, csp::Reader<std::vector<std::uint32_t>> in) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{300000}, std::size_t{3000000}}) {
      std::vector<std::uint32_t> v(n);
      std::iota(v.begin(), v.end(), 7u);
      out.write(v);
      auto r = in.read();
      ASSERT_EQ(r.size(), n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(r[i], i + 8) << "at " << i;
    }
    out.retire();
  };
  csp::Parallel(csp::os_process(child, ch.reader(), back.writer()), csp::process(parent, ch.writer(), back.reader()));
}

// ---- timeouts and non-blocking operations ---------------------------------------

TEST_P(Conformance, WriteForTimesOutAndKeepsTheValue) {
  csp::Channel<int> ch, report;
  auto child = [](csp::Writer<int> out, csp::Writer<bool> done) {
    const bool sent = out.write_for(1, 30ms);  // nobody reads yet
    done.write(sent);
    out.write(2);
  };
  csp::Channel<bool> flag;
  auto parent = [](csp::Reader<int> in, csp::Reader<bool> done) {
    EXPECT_FALSE(done.read());
    EXPECT_EQ(in.read(), 2);  // 1 was never half-sent
  };
  csp::Parallel(csp::os_process(child, ch.writer(), flag.writer()), csp::process(parent, ch.reader(), flag.reader()));
}

TEST_P(Conformance, ReadForTimesOut) {
  csp::Channel<int> ch;
  csp::Channel<bool> flag;
  auto child = [](csp::Reader<int> in, csp::Writer<bool> done) {
    auto t0 = std::chrono::steady_clock::now();
    auto v = in.read_for(30ms);
    auto waited = std::chrono::steady_clock::now() - t0;
    done.write(!v.has_value() && waited >= 30ms);
    return in.read();
  };
  auto parent = [](csp::Writer<int> out, csp::Reader<bool> done) {
    EXPECT_TRUE(done.read());
    out.write(5);
  };
  auto [got, unused] =
      csp::Parallel(csp::os_process(child, ch.reader(), flag.writer()), csp::process(parent, ch.writer(), flag.reader()));
  (void)unused;
  EXPECT_EQ(got, 5);
}

TEST_P(Conformance, TryOperationsNeverWaitForAPeer) {
  csp::Channel<int> ch;
  csp::Channel<int> go;
  auto child = [](csp::Reader<int> in, csp::Writer<int> out, csp::Reader<int> start) {
    int failures = 0;
    if (in.try_read()) ++failures;     // nobody writes
    if (out.try_write(1)) ++failures;  // nobody reads
    start.read();
    return failures;
  };
  auto [f, unused] = csp::Parallel(
      csp::os_process(child, ch.reader(), ch.writer(), go.reader()),
      csp::process([](csp::Writer<int> start) { start.write(0); }, go.writer()));
  (void)unused;
  EXPECT_EQ(f, 0);
}

// ---- buffering -----------------------------------------------------------------------

TEST_P(Conformance, BufferedChannelTakesWritesWithoutAReader) {
  csp::Channel<int> ch{csp::buffer(3)};
  csp::Channel<int> go;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal) {
    int accepted = 0;
    for (int i = 0; i < 4; ++i) accepted += out.try_write(i) ? 1 : 0;
    signal.write(accepted);
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal) {
    EXPECT_EQ(signal.read(), 3);
    EXPECT_EQ(in.read(), 0);
    EXPECT_EQ(in.read(), 1);
    EXPECT_EQ(in.read(), 2);
    EXPECT_FALSE(in.try_read().has_value());
  };
  csp::Parallel(csp::os_process(child, ch.writer(), go.writer()), csp::process(parent, ch.reader(), go.reader()));
}

TEST_P(Conformance, PriorityBufferAcrossProcesses) {
  csp::Channel<int> ch{csp::priority_buffer(8)};
  csp::Channel<int> go;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal) {
    for (int v : {5, 1, 4, 2, 3}) out.write(v);
    signal.write(0);
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal) {
    signal.read();
    for (int want = 1; want <= 5; ++want) EXPECT_EQ(in.read(), want);
  };
  csp::Parallel(csp::os_process(child, ch.writer(), go.writer()), csp::process(parent, ch.reader(), go.reader()));
}

// ---- pipelined writes (a remote's blocking writes to a buffered home) -----------------

// Many values from two children through a small buffer: every value once,
// in order per writer (the home performs a connection's pipelined writes
// in order).
TEST_P(Conformance, PipelinedWritesKeepPerWriterOrder) {
  csp::Channel<int> ch{csp::buffer(4)};
  constexpr int kWriters = 2, kPerWriter = 20000;
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < kWriters; ++k)
    writers.push_back(csp::os_process(
        [](csp::Writer<int> out, int k) { for (int i = 0; i < kPerWriter; ++i) out.write(k * kPerWriter + i); },
        ch.writer(), k));
  auto reader = [](csp::Reader<int> in) {
    PerWriterOrder order(kWriters, kPerWriter);
    int n = 0;
    for (int v : in) {
      order.take(v);
      ++n;
    }
    return n;
  };
  auto [unused, n] = csp::Parallel(std::move(writers), csp::process(reader, ch.reader()));
  (void)unused;
  EXPECT_EQ(n, kWriters * kPerWriter);
}

// Once a child's write returned and the child then talks on another
// channel, the value is in the home's buffer: causality across channels.
TEST_P(Conformance, PipelinedWritesLandBeforeTheNextCommunication) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> go, next;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal, csp::Reader<int> again) {
    for (int round = 0; round < 50; ++round) {
      for (int i = 0; i < 40; ++i) out.write(round * 100 + i);
      signal.write(round);
      EXPECT_EQ(again.read(), round);  // the parent checked this round
    }
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal, csp::Writer<int> again) {
    for (int round = 0; round < 50; ++round) {
      ASSERT_EQ(signal.read(), round);
      for (int i = 0; i < 40; ++i) {
        auto v = in.try_read();  // never waits: the 40 values must be here
        ASSERT_TRUE(v.has_value()) << "round " << round << " value " << i;
        EXPECT_EQ(*v, round * 100 + i);
      }
      EXPECT_FALSE(in.try_read().has_value());
      again.write(round);
    }
  };
  csp::Parallel(csp::os_process(child, ch.writer(), go.writer(), next.reader()),
                csp::process(parent, ch.reader(), go.reader(), next.writer()));
}

// A process that ends has its pipelined writes performed: its parent sees
// them as soon as the child's Parallel is over.
TEST_P(Conformance, PipelinedWritesLandBeforeTheProcessEnds) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();  // the child runs a coroutine
  csp::Channel<int> ch{csp::buffer(16)};
  csp::Channel<int> go;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal) {
    // The inner writer ends; its parent learns of it through Parallel only.
    csp::Parallel(csp::process([](csp::Writer<int> o) { for (int i = 0; i < 10; ++i) o.write(i); }, out));
    signal.write(1);
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal) {
    signal.read();
    for (int i = 0; i < 10; ++i) {
      auto v = in.try_read();
      ASSERT_TRUE(v.has_value()) << i;
      EXPECT_EQ(*v, i);
    }
  };
  csp::Parallel(csp::os_process(child, ch.writer(), go.writer()), csp::process(parent, ch.reader(), go.reader()));
}

// Batches of pipelined writes (the home buffers those of one read under one
// lock, the drain performs the rest) against a small buffer that fills in
// the middle of a batch: every value once, in order per writer, and
// back-pressure holds: a child's returned writes never run ahead of what the
// reader took by more than the buffer plus its window of unanswered writes.
TEST_P(Conformance, PipelinedBatchesKeepOrderAndBackPressure) {
  constexpr int kCapacity = 8, kWindow = 8;  // the window is min(capacity, kMaxPipelined)
  constexpr int kWriters = 2, kPerWriter = 20000;
  // Each child's count of returned writes, in memory the children share
  // (mapped before they fork).
  void* shared = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* written = static_cast<std::atomic<int>*>(shared);
  for (int k = 0; k < kWriters; ++k) new (&written[k]) std::atomic<int>(0);
  csp::Channel<int> ch{csp::buffer(kCapacity)};
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < kWriters; ++k)
    writers.push_back(csp::os_process(
        [written](csp::Writer<int> out, int k) {
          for (int i = 0; i < kPerWriter; ++i) {
            out.write(k * kPerWriter + i);
            written[k].store(i + 1, std::memory_order_release);
          }
        },
        ch.writer(), k));
  auto reader = [written](csp::Reader<int> in) {
    // Let the first writer fill the buffer and its window before reading,
    // so batches meet a full buffer (a timeout only guards against a hang).
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (written[0].load(std::memory_order_acquire) < kCapacity + 1 && std::chrono::steady_clock::now() < give_up)
      csp::yield();
    PerWriterOrder order(kWriters, kPerWriter);
    int n = 0;
    for (int v : in) {
      order.take(v);
      ++n;
      for (int j = 0; j < kWriters; ++j)
        EXPECT_LE(written[j].load(std::memory_order_acquire), order.next(j) + kCapacity + kWindow) << "writer " << j;
    }
    return n;
  };
  auto [unused, n] = csp::Parallel(std::move(writers), csp::process(reader, ch.reader()));
  (void)unused;
  EXPECT_EQ(n, kWriters * kPerWriter);
  ::munmap(shared, 4096);
}

// A child killed while its pipelined writes are on their way (some read by
// the home, some being performed, some queued behind a full buffer): the
// parent reads an in-order prefix of them, each once, then ChannelPoisoned;
// nothing hangs and the child is reported killed.
TEST_P(Conformance, APipeliningChildKilledMidBatchFailsCleanly) {
  constexpr int kValues = 5000;
  csp::Channel<int> ch{csp::buffer(16)};
  auto child = [](csp::Writer<int> out) {
    for (int i = 0; i < kValues; ++i) out.write(i);
    ::kill(::getpid(), SIGKILL);
  };
  int read = 0;  // values the parent read before the poison
  auto reader = [&read](csp::Reader<int> in) {
    try {
      for (;; ++read) {
        const int v = in.read();
        if (v != read) {
          ADD_FAILURE() << "read " << v << ", expected " << read;
          return;
        }
      }
    } catch (const csp::ChannelPoisoned&) {
    }
  };
  std::string failure;
  try {
    csp::Parallel(csp::os_process(child, ch.writer()), csp::process(reader, ch.reader()));
  } catch (const csp::ProcessFailed& e) {
    failure = e.what();
  }
  EXPECT_NE(failure.find("signal"), std::string::npos) << failure;
  EXPECT_LE(read, kValues);
}

// Readers retiring fails pipelined writers too: a later write (or the end of
// the writing process) throws ChannelRetired, so the child's loop ends.
TEST_P(Conformance, ReadersRetiringFailsAPipelinedWriter) {
  csp::Channel<int> ch{csp::buffer(8)};
  auto child = [](csp::Writer<int> out) {
    try {
      for (;;) out.write(1);
    } catch (const csp::ChannelRetired&) {
      return 1;
    }
  };
  auto parent = [](csp::Reader<int> in) {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(in.read(), 1);
  };  // then the only reader end leaves
  auto [caught, unused] = csp::Parallel(csp::os_process(child, ch.writer()), csp::process(parent, ch.reader()));
  (void)unused;
  EXPECT_EQ(caught, 1);
}

// Poison reaches a pipelined writer: its loop ends with ChannelPoisoned.
TEST_P(Conformance, PoisonFailsAPipelinedWriter) {
  csp::Channel<int> ch{csp::buffer(8)};
  auto child = [](csp::Writer<int> out) {
    try {
      for (;;) out.write(2);
    } catch (const csp::ChannelPoisoned&) {
      return 1;
    }
  };
  auto parent = [](csp::Reader<int> in) {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(in.read(), 2);
    in.poison();
  };
  auto [caught, unused] = csp::Parallel(csp::os_process(child, ch.writer()), csp::process(parent, ch.reader()));
  (void)unused;
  EXPECT_EQ(caught, 1);
}

// ---- poison ----------------------------------------------------------------------------

TEST_P(Conformance, PoisonFromChildWakesBlockedParentRead) {
  csp::Channel<int> ch;
  auto parent = [](csp::Reader<int> in) {
    EXPECT_THROW(in.read(), csp::ChannelPoisoned);
  };
  csp::Parallel(csp::os_process([](csp::Writer<int> out) { out.poison(); }, ch.writer()),
                csp::process(parent, ch.reader()));
}

TEST_P(Conformance, PoisonFromParentWakesBlockedChildRead) {
  csp::Channel<int> ch;
  csp::Channel<int> ready;
  auto child = [](csp::Reader<int> in, csp::Writer<int> signal) {
    signal.write(0);
    try {
      in.read();
    } catch (const csp::ChannelPoisoned&) {
      return 1;
    }
    return 0;
  };
  auto [caught, unused] = csp::Parallel(
      csp::os_process(child, ch.reader(), ready.writer()),
      csp::process([](csp::Reader<int> signal, csp::Writer<int> w) { signal.read(); w.poison(); }, ready.reader(),
                   ch.writer()));
  (void)unused;
  EXPECT_EQ(caught, 1);
}

// A child ending by ChannelPoisoned poisons every channel among its arguments.
TEST_P(Conformance, PoisonPropagatesThroughAChild) {
  csp::Channel<int> a, b;
  auto relay = [](csp::Reader<int> in, csp::Writer<int> out) {
    for (;;) out.write(in.read() + 1);
  };
  auto parent = [](csp::Writer<int> to, csp::Reader<int> from) {
    to.write(1);
    EXPECT_EQ(from.read(), 2);
    to.poison();
    EXPECT_THROW(from.read(), csp::ChannelPoisoned);
  };
  csp::Parallel(csp::os_process(relay, a.reader(), b.writer()), csp::process(parent, a.writer(), b.reader()));
}

// ---- retire ----------------------------------------------------------------------------

TEST_P(Conformance, WritersRetiringEndsTheReadersLoop) {
  csp::Channel<int> ch;
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < 3; ++k)
    writers.push_back(csp::os_process([](csp::Writer<int> out, int k) { for (int i = 0; i < 10; ++i) out.write(k); },
                                      ch.writer(), k));
  auto reader = [](csp::Reader<int> in) { int n = 0; for (int v : in) n += v >= 0; return n; };
  auto [unused, n] = csp::Parallel(std::move(writers), csp::process(reader, ch.reader()));
  (void)unused;
  EXPECT_EQ(n, 30);
}

TEST_P(Conformance, ReadersRetiringFailsTheWriter) {
  csp::Channel<int> ch;
  auto child = [](csp::Reader<int> in) { return in.read(); };  // then its reader end leaves
  auto parent = [](csp::Writer<int> out) {
    out.write(9);
    EXPECT_THROW(for (;;) out.write(1), csp::ChannelRetired);
  };
  auto [got, unused] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(parent, ch.writer()));
  (void)unused;
  EXPECT_EQ(got, 9);
}

TEST_P(Conformance, ExplicitRetireInChildIsSeenByParentCopies) {
  csp::Channel<int> ch;
  csp::Writer<int> w = ch.writer();
  csp::Channel<int> done;
  auto child = [](csp::Writer<int> out, csp::Writer<int> signal) {
    out.retire();
    signal.write(0);
  };
  auto parent = [](csp::Reader<int> in, csp::Reader<int> signal) {
    signal.read();
    EXPECT_THROW(in.read(), csp::ChannelRetired);
  };
  csp::Parallel(csp::os_process(child, w, done.writer()), csp::process(parent, ch.reader(), done.reader()));
  EXPECT_THROW(w.write(1), csp::ChannelRetired);  // the same end, retired through the child's copy
}

// ---- any-to-any --------------------------------------------------------------------------

TEST_P(Conformance, ManyWritersManyReadersAcrossProcesses) {
  csp::Channel<int> ch;
  constexpr int kWriters = 3, kPerWriter = 200;
  std::vector<csp::Process<void>> writers;
  for (int k = 0; k < kWriters; ++k)
    writers.push_back(csp::os_process(
        [](csp::Writer<int> out, int k) { for (int i = 0; i < kPerWriter; ++i) out.write(k * 1000 + i); }, ch.writer(), k));
  std::vector<csp::Process<long>> readers;
  for (int k = 0; k < 2; ++k)
    readers.push_back(csp::os_process([](csp::Reader<int> in) { long s = 0; for (int v : in) s += v; return s; },
                                      ch.reader()));
  readers.push_back(csp::process([](csp::Reader<int> in) { long s = 0; for (int v : in) s += v; return s; },
                                 ch.reader()));
  auto [unused, sums] = csp::Parallel(std::move(writers), std::move(readers));
  (void)unused;
  long want = 0;
  for (int k = 0; k < kWriters; ++k)
    for (int i = 0; i < kPerWriter; ++i) want += k * 1000 + i;
  EXPECT_EQ(std::accumulate(sums.begin(), sums.end(), 0L), want);
}

// ---- alternation ---------------------------------------------------------------------------

// A child selects over input guards; the parent writes to one channel at a time.
TEST_P(Conformance, ChildSelectsInputs) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> a, b;
  auto child = [](csp::Reader<int> ra, csp::Reader<int> rb) {
    int sum = 0;
    for (int i = 0; i < 40; ++i) {
      auto s = csp::AltSelect(csp::input(ra), csp::input(rb));
      sum += s.value<int>() * (s.index == 0 ? 1 : 100);
    }
    return sum;
  };
  auto parent = [](csp::Writer<int> wa, csp::Writer<int> wb) {
    for (int i = 0; i < 20; ++i) {
      wa.write(1);
      wb.write(1);
    }
  };
  auto [sum, unused] = csp::Parallel(csp::os_process(child, a.reader(), b.reader()), csp::process(parent, a.writer(), b.writer()));
  (void)unused;
  EXPECT_EQ(sum, 20 * 1 + 20 * 100);
}

// A child's output guard against the parent's input guards and back: every
// value offered is delivered once or not at all.
TEST_P(Conformance, OutputGuardsAgainstInputGuards) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> to_parent, to_child;
  constexpr int kRounds = 100;
  auto child = [](csp::Writer<int> out, csp::Reader<int> in) {
    int sent = 0, got = 0;
    for (int i = 0; i < kRounds; ++i) {
      auto s = csp::PriSelect(csp::output(out, i), csp::input(in));
      if (s.index == 0) ++sent; else got += s.value<int>() == i ? 1 : 1000;
    }
    return sent * 1000 + got;
  };
  auto parent = [](csp::Reader<int> in, csp::Writer<int> out) {
    int sent = 0, got = 0;
    for (int i = 0; i < kRounds; ++i) {
      auto s = csp::PriSelect(csp::input(in), csp::output(out, i));
      if (s.index == 0) got += s.value<int>() == i ? 1 : 1000; else ++sent;
    }
    return sent * 1000 + got;
  };
  auto [c, p] = csp::Parallel(csp::os_process(child, to_parent.writer(), to_child.reader()),
                              csp::process(parent, to_parent.reader(), to_child.writer()));
  // What one side sent the other got, in order, and every round fired once.
  EXPECT_EQ(c / 1000, p % 1000);
  EXPECT_EQ(p / 1000, c % 1000);
  EXPECT_EQ(c / 1000 + c % 1000, kRounds);
}

// Two remote selects meet (both channels' home is the parent).
TEST_P(Conformance, SelectsInTwoChildrenMeet) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> a, b;
  constexpr int kRounds = 30;
  auto offerer = [](csp::Writer<int> wa, csp::Writer<int> wb) {
    for (int i = 0; i < kRounds; ++i) csp::AltSelect(csp::output(wa, i), csp::output(wb, i));
  };
  auto taker = [](csp::Reader<int> ra, csp::Reader<int> rb) {
    int sum = 0;
    for (int i = 0; i < kRounds; ++i) sum += csp::AltSelect(csp::input(ra), csp::input(rb)).value<int>();
    return sum;
  };
  auto [unused, sum] = csp::Parallel(csp::os_process(offerer, a.writer(), b.writer()),
                                     csp::os_process(taker, a.reader(), b.reader()));
  (void)unused;
  EXPECT_EQ(sum, kRounds * (kRounds - 1) / 2);
}

TEST_P(Conformance, SelectTimeoutAndPoisonInChild) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> a;
  csp::Channel<int> ready;
  auto child = [](csp::Reader<int> ra, csp::Writer<int> signal) {
    auto s = csp::PriSelect(csp::input(ra), csp::timeout(20ms));
    if (s.index != 1) return -1;
    signal.write(0);
    try {
      csp::PriSelect(csp::input(ra));
    } catch (const csp::ChannelPoisoned&) {
      return 1;
    }
    return -2;
  };
  auto [r, unused] = csp::Parallel(
      csp::os_process(child, a.reader(), ready.writer()),
      csp::process([](csp::Reader<int> signal, csp::Writer<int> w) { signal.read(); w.poison(); }, ready.reader(),
                   a.writer()));
  (void)unused;
  EXPECT_EQ(r, 1);
}

// Channel handles among the arguments: the child makes its own ends.
TEST_P(Conformance, ChannelArgumentMakesEndsInTheChild) {
  csp::Channel<int> ch;
  auto child = [](csp::Channel<int> c) {
    auto w = c.writer();
    for (int i = 0; i < 10; ++i) w.write(i);
  };
  auto [unused, sum] = csp::Parallel(csp::os_process(child, ch),
                                     csp::process([](csp::Reader<int> in) { int s = 0; for (int v : in) s += v; return s; },
                                                  ch.reader()));
  (void)unused;
  EXPECT_EQ(sum, 45);
}

// Nested: a child's argument end passed on to a grandchild.
TEST_P(Conformance, GrandchildReachesTheHomeThroughItsParent) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> ch;
  auto child = [](csp::Writer<int> out) {
    csp::Parallel(csp::os_process([](csp::Writer<int> o) { for (int i = 0; i < 20; ++i) o.write(i); }, out));
  };
  auto [unused, sum] = csp::Parallel(csp::os_process(child, ch.writer()),
                                     csp::process([](csp::Reader<int> in) { int s = 0; for (int v : in) s += v; return s; },
                                                  ch.reader()));
  (void)unused;
  EXPECT_EQ(sum, 190);
}

// ---- streaming to a remote reader ------------------------------------------------------
// A child reading a buffered channel whose home (and writer) is the parent:
// the cases a read-ahead of the home's buffer to the remote reader must keep
// (see wire.hpp): order and exactly-once, other readers never starved, a
// reader that stops leaves the rest in order for the others, poison,
// retire, timeouts and selects. Children report what they read; the parent
// checks it (a failed EXPECT in a child would not reach the test).

/// True if `v` is strictly increasing.
bool increasing(const std::vector<int>& v) {
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) return false;
  return true;
}

/// 0, 1, ..., n - 1.
std::vector<int> iota_vector(int from, int to) {
  std::vector<int> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

auto write_count(int n) {
  return [n](csp::Writer<int> out) { for (int i = 0; i < n; ++i) out.write(i); };
}

TEST_P(Conformance, StreamToAChildInOrderExactlyOnce) {
  csp::Channel<int> ch{csp::buffer(64)};
  constexpr int kValues = 5000;
  auto [got, unused] = csp::Parallel(
      csp::os_process([](csp::Reader<int> in) { std::vector<int> all; for (int v : in) all.push_back(v); return all; },
                      ch.reader()),
      csp::process(write_count(kValues), ch.writer()));  // retires with values still buffered
  (void)unused;
  EXPECT_EQ(got, iota_vector(0, kValues));
}

// A reader that joins while a child streams gets values: the child, busy
// elsewhere, must not sit on values the new reader waits for.
TEST_P(Conformance, ASecondReaderJoiningMidStreamGetsValues) {
  csp::Channel<int> ch{csp::buffer(16)};
  csp::Channel<int> joined, resume;
  constexpr int kValues = 2000;
  auto child = [](csp::Reader<int> in, csp::Writer<int> told, csp::Reader<int> go_on) {
    std::vector<int> got;
    for (int i = 0; i < 100; ++i) got.push_back(in.read());
    told.write(0);
    go_on.read();  // blocked here while the parent's new reader takes 500 values
    for (int v : in) got.push_back(v);
    return got;
  };
  auto late_reader = [&ch](csp::Reader<int> told, csp::Writer<int> go_on) {
    told.read();
    csp::Reader<int> in = ch.reader();
    std::vector<int> got;
    for (int i = 0; i < 500; ++i) got.push_back(in.read());
    go_on.write(0);
    for (int v : in) got.push_back(v);
    return got;
  };
  auto [remote, unused, local] =
      csp::Parallel(csp::os_process(child, ch.reader(), joined.writer(), resume.reader()),
                    csp::process(write_count(kValues), ch.writer()),
                    csp::process(late_reader, joined.reader(), resume.writer()));
  (void)unused;
  EXPECT_TRUE(increasing(remote));
  EXPECT_TRUE(increasing(local));
  EXPECT_GE(remote.size(), 100u);
  EXPECT_GE(local.size(), 500u);
  std::vector<int> all = remote;
  all.insert(all.end(), local.begin(), local.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota_vector(0, kValues));
}

// A child and a local reader share one stream from the start.
TEST_P(Conformance, RemoteAndLocalReadersShareAStream) {
  csp::Channel<int> ch{csp::buffer(32)};
  constexpr int kValues = 3000;
  auto collect = [](csp::Reader<int> in) { std::vector<int> all; for (int v : in) all.push_back(v); return all; };
  auto [remote, local, unused] = csp::Parallel(csp::os_process(collect, ch.reader()), csp::process(collect, ch.reader()),
                                               csp::process(write_count(kValues), ch.writer()));
  (void)unused;
  EXPECT_TRUE(increasing(remote));
  EXPECT_TRUE(increasing(local));
  std::vector<int> all = remote;
  all.insert(all.end(), local.begin(), local.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota_vector(0, kValues));
}

// A child that takes k values and retires leaves the rest, in order, to
// the home's reader.
TEST_P(Conformance, AReaderThatRetiresLeavesTheRestToTheHome) {
  csp::Channel<int> ch{csp::buffer(16)};
  csp::Channel<int> done;
  constexpr int kValues = 1000, kTaken = 37;
  auto child = [](csp::Reader<int> in, csp::Writer<int> told) {
    std::vector<int> got;
    for (int i = 0; i < kTaken; ++i) got.push_back(in.read());
    in.retire();
    told.write(0);
    return got;
  };
  auto home_reader = [](csp::Reader<int> in, csp::Reader<int> told) {
    told.read();
    std::vector<int> got;
    for (int v : in) got.push_back(v);
    return got;
  };
  auto [remote, local, unused] = csp::Parallel(csp::os_process(child, ch.reader(), done.writer()),
                                               csp::process(home_reader, ch.reader(), done.reader()),
                                               csp::process(write_count(kValues), ch.writer()));
  (void)unused;
  EXPECT_EQ(remote, iota_vector(0, kTaken));
  EXPECT_EQ(local, iota_vector(kTaken, kValues));
}

// A child that takes k values and ends leaves the rest, in order, to
// another child.
TEST_P(Conformance, AReaderThatEndsLeavesTheRestToAnotherChild) {
  csp::Channel<int> ch{csp::buffer(16)};
  csp::Channel<int> done;
  constexpr int kValues = 1000, kTaken = 41;
  auto first = [](csp::Reader<int> in, csp::Writer<int> told) {
    std::vector<int> got;
    for (int i = 0; i < kTaken; ++i) got.push_back(in.read());
    told.write(0);
    return got;
  };  // its end leaves as the child ends
  auto second = [](csp::Reader<int> in, csp::Reader<int> told) {
    told.read();
    std::vector<int> got;
    for (int v : in) got.push_back(v);
    return got;
  };
  auto [a, b, unused] = csp::Parallel(csp::os_process(first, ch.reader(), done.writer()),
                                      csp::os_process(second, ch.reader(), done.reader()),
                                      csp::process(write_count(kValues), ch.writer()));
  (void)unused;
  EXPECT_EQ(a, iota_vector(0, kTaken));
  EXPECT_EQ(b, iota_vector(kTaken, kValues));
}

// Poison by the writer while a child streams: the child read a prefix, in
// order, then got ChannelPoisoned.
TEST_P(Conformance, PoisonByTheHomeEndsAStreamingChild) {
  csp::Channel<int> ch{csp::buffer(32)};
  auto child = [](csp::Reader<int> in) {
    std::vector<int> got;
    try {
      for (;;) got.push_back(in.read());
    } catch (const csp::ChannelPoisoned&) {
      got.push_back(-1);  // the marker: ended by poison
    }
    return got;
  };
  auto writer = [](csp::Writer<int> out) {
    for (int i = 0; i < 500; ++i) out.write(i);
    out.poison();
  };
  auto [got, unused] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(writer, ch.writer()));
  (void)unused;
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), -1);
  got.pop_back();
  EXPECT_EQ(got, iota_vector(0, static_cast<int>(got.size())));
}

// Poison by a streaming child: the home's writer gets ChannelPoisoned.
TEST_P(Conformance, PoisonByAStreamingChildStopsTheWriter) {
  csp::Channel<int> ch{csp::buffer(32)};
  auto child = [](csp::Reader<int> in) {
    std::vector<int> got;
    for (int i = 0; i < 100; ++i) got.push_back(in.read());
    in.poison();
    return got;
  };
  auto writer = [](csp::Writer<int> out) {
    int n = 0;
    try {
      for (;; ++n) out.write(n);
    } catch (const csp::ChannelPoisoned&) {
    }
    return n;
  };
  auto [got, written] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(writer, ch.writer()));
  EXPECT_EQ(got, iota_vector(0, 100));
  EXPECT_GE(written, 100);
}

// The only reader, a child, retires mid-stream: the writer gets ChannelRetired.
TEST_P(Conformance, AStreamingChildRetiringStopsTheWriter) {
  csp::Channel<int> ch{csp::buffer(32)};
  auto child = [](csp::Reader<int> in) {
    std::vector<int> got;
    for (int i = 0; i < 50; ++i) got.push_back(in.read());
    in.retire();
    return got;
  };
  auto writer = [](csp::Writer<int> out) {
    int n = 0;
    try {
      for (;; ++n) out.write(n);
    } catch (const csp::ChannelRetired&) {
    }
    return n;
  };
  auto [got, written] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(writer, ch.writer()));
  EXPECT_EQ(got, iota_vector(0, 50));
  EXPECT_GE(written, 50);
}

// read_for between two bursts: nothing can come while the writer waits for
// the child's word, so the timed read times out; the stream then goes on.
TEST_P(Conformance, ReadForTimesOutBetweenBursts) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> go;
  auto child = [](csp::Reader<int> in, csp::Writer<int> go_on) {
    std::vector<int> got;
    for (int i = 0; i < 100; ++i) got.push_back(in.read());
    got.push_back(in.read_for(20ms).has_value() ? -2 : -1);  // -1: timed out, as it must
    go_on.write(0);
    for (int v : in) got.push_back(v);
    return got;
  };
  auto writer = [](csp::Writer<int> out, csp::Reader<int> go_on) {
    for (int i = 0; i < 100; ++i) out.write(i);
    go_on.read();
    for (int i = 100; i < 300; ++i) out.write(i);
  };
  auto [got, unused] =
      csp::Parallel(csp::os_process(child, ch.reader(), go.writer()), csp::process(writer, ch.writer(), go.reader()));
  (void)unused;
  std::vector<int> want = iota_vector(0, 100);
  want.push_back(-1);
  for (int i = 100; i < 300; ++i) want.push_back(i);
  EXPECT_EQ(got, want);
}

// A child selects over a streaming input and another channel: every value
// once, the stream's in order.
TEST_P(Conformance, ChildSelectsOverAStreamingInput) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();
  csp::Channel<int> data{csp::buffer(64)};
  csp::Channel<int> other;
  constexpr int kValues = 1000, kOthers = 20;
  auto child = [](csp::Reader<int> in, csp::Reader<int> side) {
    std::vector<int> got;
    int others = 0;
    while (static_cast<int>(got.size()) < kValues || others < kOthers) {
      auto s = csp::AltSelect(csp::input(in), csp::input(side));
      if (s.index == 0) got.push_back(s.value<int>()); else others += s.value<int>();
    }
    got.push_back(others);
    return got;
  };
  auto side_writer = [](csp::Writer<int> out) { for (int i = 0; i < kOthers; ++i) out.write(1); };
  auto [got, unused1, unused2] =
      csp::Parallel(csp::os_process(child, data.reader(), other.reader()),
                    csp::process(write_count(kValues), data.writer()), csp::process(side_writer, other.writer()));
  (void)unused1;
  (void)unused2;
  std::vector<int> want = iota_vector(0, kValues);
  want.push_back(kOthers);
  EXPECT_EQ(got, want);
}

// ---- read-ahead: values lent to a child reader (wire.hpp, "Read-ahead") ----------------

// 100,000 values through a buffer of 64 to a child: order and sum.
TEST_P(Conformance, StreamOf100000ValuesToAChild) {
  csp::Channel<std::uint64_t> ch{csp::buffer(64)};
  constexpr std::uint64_t kValues = 100000;
  auto child = [](csp::Reader<std::uint64_t> in) {
    std::uint64_t n = 0, sum = 0, out_of_order = 0;
    for (std::uint64_t v : in) {
      if (v != n) ++out_of_order;
      sum += v * 2654435761u;
      ++n;
    }
    return std::vector<std::uint64_t>{n, sum, out_of_order};
  };
  auto writer = [](csp::Writer<std::uint64_t> out) { for (std::uint64_t i = 0; i < kValues; ++i) out.write(i); };
  auto [got, unused] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(writer, ch.writer()));
  (void)unused;
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < kValues; ++i) sum += i * 2654435761u;
  EXPECT_EQ(got, (std::vector<std::uint64_t>{kValues, sum, 0}));
}

// A child that takes k of a full buffer (the rest lent to it) and ends
// normally: the parent then reads every other value, in order, once.
TEST_P(Conformance, AReaderThatExitsLeavesTheRestToTheParent) {
  csp::Channel<int> ch{csp::buffer(64)};
  {
    csp::Writer<int> w = ch.writer();
    for (int i = 0; i < 64; ++i) w.write(i);
  }  // the writers retired: the parent's loop below ends once it drained the buffer
  constexpr int kTaken = 10;
  auto child = [](csp::Reader<int> in) {
    std::vector<int> got;
    for (int i = 0; i < kTaken; ++i) got.push_back(in.read());
    return got;
  };
  auto [taken] = csp::Parallel(csp::os_process(child, ch.reader()));
  EXPECT_EQ(taken, iota_vector(0, kTaken));
  std::vector<int> rest;
  for (int v : ch.reader()) rest.push_back(v);
  EXPECT_EQ(rest, iota_vector(kTaken, 64));
}

// A local reader joins while a child streams: the child's lent values come
// back to it in order, nothing is lost or read twice, both see order.
TEST_P(Conformance, ALocalReaderJoiningAStreamingChild) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> progress{csp::buffer(1)};
  constexpr int kValues = 20000;
  auto child = [](csp::Reader<int> in, csp::Writer<int> told) {
    std::vector<int> got;
    for (int v : in) {
      got.push_back(v);
      if (got.size() == 1000) told.write(0);  // keeps streaming
    }
    return got;
  };
  auto late_reader = [&ch](csp::Reader<int> told) {
    told.read();
    csp::Reader<int> in = ch.reader();
    std::vector<int> got;
    for (int i = 0; i < 2000; ++i) got.push_back(in.read());
    return got;  // then its end leaves: the child may be lent to again
  };
  auto [remote, unused, local] =
      csp::Parallel(csp::os_process(child, ch.reader(), progress.writer()),
                    csp::process(write_count(kValues), ch.writer()), csp::process(late_reader, progress.reader()));
  (void)unused;
  EXPECT_TRUE(increasing(remote));
  EXPECT_TRUE(increasing(local));
  EXPECT_EQ(local.size(), 2000u);
  std::vector<int> all = remote;
  all.insert(all.end(), local.begin(), local.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota_vector(0, kValues));
}

// Poison while values are lent to a child: after the child learned of the
// poison (through another channel) it gets no lent value, only ChannelPoisoned.
TEST_P(Conformance, PoisonRevokesWhatIsLent) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> took, poisoned;
  auto child = [](csp::Reader<int> in, csp::Writer<int> told, csp::Reader<int> after) {
    const int first = in.read();  // the rest of the buffer is lent to us now
    told.write(first);
    after.read();
    int read_after_poison = 0;
    try {
      for (;;) {
        in.read();
        ++read_after_poison;
      }
    } catch (const csp::ChannelPoisoned&) {
    }
    return read_after_poison;
  };
  auto parent = [](csp::Writer<int> out, csp::Reader<int> told, csp::Writer<int> after) {
    for (int i = 0; i < 64; ++i) out.write(i);
    EXPECT_EQ(told.read(), 0);
    out.poison();
    after.write(0);
  };
  auto [after_poison, unused] = csp::Parallel(csp::os_process(child, ch.reader(), took.writer(), poisoned.reader()),
                                              csp::process(parent, ch.writer(), took.reader(), poisoned.writer()));
  (void)unused;
  EXPECT_EQ(after_poison, 0);
}

// The writers retire while values are lent to a child; a local reader then
// drains everything (lent values come back) and gets ChannelRetired; so
// does the child, with nothing left.
TEST_P(Conformance, WriterRetiredWhileLentDrainsEverything) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> took, drained;
  {
    csp::Writer<int> w = ch.writer();
    for (int i = 0; i < 64; ++i) w.write(i);
  }
  constexpr int kTaken = 20;
  auto child = [](csp::Reader<int> in, csp::Writer<int> told, csp::Reader<int> go_on) {
    std::vector<int> got;
    for (int i = 0; i < kTaken; ++i) got.push_back(in.read());
    told.write(0);
    go_on.read();
    for (int v : in) got.push_back(v);  // nothing left: ends with ChannelRetired
    return got;
  };
  auto parent = [&ch](csp::Reader<int> told, csp::Writer<int> go_on) {
    told.read();
    std::vector<int> got;
    for (int v : ch.reader()) got.push_back(v);
    go_on.write(0);
    return got;
  };
  auto [remote, local] = csp::Parallel(csp::os_process(child, ch.reader(), took.writer(), drained.reader()),
                                       csp::process(parent, took.reader(), drained.writer()));
  EXPECT_EQ(remote, iota_vector(0, kTaken));
  EXPECT_EQ(local, iota_vector(kTaken, 64));
}

// Room freed by a child's takes reaches a writer at the home at once, as a
// read would free it: the child takes 10 of a full buffer (the rest lent to
// it), then waits on another channel until the writer has put 10 more.
TEST_P(Conformance, TakesOfALentValueFreeRoomAtOnce) {
  csp::Channel<int> ch{csp::buffer(64)};
  csp::Channel<int> started, go;
  constexpr int kTaken = 10;
  auto child = [](csp::Reader<int> in, csp::Writer<int> begun, csp::Reader<int> go_on) {
    begun.write(0);
    std::vector<int> got;
    for (int i = 0; i < kTaken; ++i) got.push_back(in.read());
    go_on.read();  // blocks until the writer could put 64 + kTaken values
    for (int v : in) got.push_back(v);
    return got;
  };
  auto writer = [](csp::Writer<int> out, csp::Reader<int> begun, csp::Writer<int> go_on) {
    for (int i = 0; i < 64; ++i) out.write(i);
    begun.read();
    for (int i = 64; i < 64 + kTaken; ++i) out.write(i);  // needs the room of the child's takes
    go_on.write(0);
    for (int i = 64 + kTaken; i < 200; ++i) out.write(i);
  };
  auto [got, unused] = csp::Parallel(csp::os_process(child, ch.reader(), started.writer(), go.reader()),
                                     csp::process(writer, ch.writer(), started.reader(), go.writer()));
  (void)unused;
  EXPECT_EQ(got, iota_vector(0, 200));
}

// Two processes of one child read the same lent stream (one RemoteChannel):
// every value once, each process's share in order.
TEST_P(Conformance, TwoProcessesOfAChildShareALentStream) {
  CSP_SKIP_IF_CHILD_STARTS_THREADS();  // the child runs a Parallel
  csp::Channel<int> ch{csp::buffer(64)};
  constexpr int kValues = 20000;
  auto child = [](csp::Reader<int> in) {
    auto collect = [](csp::Reader<int> r) { std::vector<int> got; for (int v : r) got.push_back(v); return got; };
    auto [a, b] = csp::Parallel(csp::process(collect, in), csp::thread_process(collect, in));
    const bool ordered = increasing(a) && increasing(b);
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    a.push_back(ordered ? 1 : 0);
    return a;
  };
  auto [got, unused] = csp::Parallel(csp::os_process(child, ch.reader()), csp::process(write_count(kValues), ch.writer()));
  (void)unused;
  std::vector<int> want = iota_vector(0, kValues);
  want.push_back(1);
  EXPECT_EQ(got, want);
}

// A child reader killed by SIGKILL mid-stream, values lent to it: the
// parent is not left waiting (the child fails, its channels are poisoned,
// DESIGN §4b), and the lent values were revoked, not lost in transit: the
// writer is woken by the poison, whatever was lent. (That what was not
// taken comes back exactly once is shown in-process by
// Lending.RevokedValuesComeBackInOrderExactlyOnce, with the same word.)
TEST_P(Conformance, AStreamingChildKilledMidStreamFailsCleanly) {
  csp::Channel<int> ch{csp::buffer(64)};
  auto child = [](csp::Reader<int> in) {
    for (int i = 0; i < 500; ++i) in.read();
    ::kill(::getpid(), SIGKILL);
  };
  auto writer = [](csp::Writer<int> out) {
    int n = 0;
    try {
      for (;; ++n) out.write(n);
    } catch (const csp::ChannelPoisoned&) {
    }
    return n;
  };
  std::string failure;
  try {
    csp::Parallel(csp::os_process(child, ch.reader()), csp::process(writer, ch.writer()));
  } catch (const csp::ProcessFailed& e) {
    failure = e.what();
  }
  EXPECT_NE(failure.find("signal"), std::string::npos) << failure;
}

INSTANTIATE_TEST_SUITE_P(Transports, Conformance, csp_test::all_link_kinds(), csp_test::link_kind_name);

// ---- lending at the home, with the remote's side played here ------------------------------
// The home channel's half of read-ahead, driven directly: a Borrower that
// records what is lent, and a "remote" that takes lent values by the same
// CAS RemoteChannel uses. Shows what the transports cannot show once a
// child is killed (its channels are poisoned then): every value not taken
// comes back, in order, exactly once.

class RecordingBorrower final : public csp::detail::Borrower<int> {
 public:
  explicit RecordingBorrower(std::atomic<std::uint64_t>* word) : Borrower(word) {}
  bool encode_lent(const int& value, std::uint32_t epoch, std::uint16_t index) override {
    lent.push_back({value, epoch, index});
    return true;
  }
  struct Lent {
    int value;
    std::uint32_t epoch;
    std::uint16_t index;
  };
  std::vector<Lent> lent;
};

/// The remote's take (RemoteChannel::take_locked): true if `l` is ours.
bool take(std::atomic<std::uint64_t>& word, const RecordingBorrower::Lent& l) {
  namespace lw = csp::detail::lend_word;
  std::uint64_t w = word.load();
  for (;;) {
    if (lw::epoch(w) != l.epoch || lw::taken(w) != l.index) return false;
    if (word.compare_exchange_weak(w, lw::make(lw::epoch(w), static_cast<std::uint16_t>(lw::taken(w) + 1))))
      return true;
  }
}

TEST(Lending, RevokedValuesComeBackInOrderExactlyOnce) {
  csp::Channel<int> ch{csp::buffer(64)};
  auto home = ch.impl();
  ASSERT_TRUE(home->lendable());
  csp::Writer<int> w = ch.writer();
  for (int i = 0; i < 64; ++i) w.write(i);
  EXPECT_FALSE(w.try_write(64));  // full
  std::atomic<std::uint64_t> word{0};
  RecordingBorrower remote(&word);
  ASSERT_NE(home->lend_attach(remote), 0u);
  csp::detail::Waiter park("lend", "test", false);
  auto r = home->lend(remote, park);
  ASSERT_EQ(r.kind, csp::detail::LendResult::lent);
  ASSERT_EQ(remote.lent.size(), 64u);
  EXPECT_FALSE(w.try_write(64));  // lent values still count against the capacity
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(take(word, remote.lent[i]));
  home->lend_consumed(remote);  // the hint: their room is free
  for (int i = 64; i < 74; ++i) EXPECT_TRUE(w.try_write(i)) << i;
  EXPECT_FALSE(w.try_write(74));
  ASSERT_TRUE(take(word, remote.lent[10]));  // taken, not yet reported
  home->lend_revoke(remote, true);           // the connection ends (the child died)
  EXPECT_FALSE(take(word, remote.lent[11]));  // too late: it went back
  EXPECT_EQ(home->lend_attach(remote), 0u);   // never again
  w.retire();
  std::vector<int> rest;
  for (int v : ch.reader()) rest.push_back(v);
  EXPECT_EQ(rest, iota_vector(11, 74));
}

// A writer that finds the capacity full of lent values sees the remote's
// takes at once, and asks for a hint (the word's bit) for the next one.
TEST(Lending, AWriterSeesTakesAndAsksForAHint) {
  namespace lw = csp::detail::lend_word;
  csp::Channel<int> ch{csp::buffer(4)};
  auto home = ch.impl();
  csp::Writer<int> w = ch.writer();
  for (int i = 0; i < 4; ++i) w.write(i);
  std::atomic<std::uint64_t> word{0};
  RecordingBorrower remote(&word);
  ASSERT_NE(home->lend_attach(remote), 0u);
  csp::detail::Waiter park("lend", "test", false);
  ASSERT_EQ(home->lend(remote, park).kind, csp::detail::LendResult::lent);
  EXPECT_FALSE(lw::wants_hint(word.load()));
  EXPECT_FALSE(w.try_write(4));  // full of lent values: asks for a hint
  EXPECT_TRUE(lw::wants_hint(word.load()));
  ASSERT_TRUE(take(word, remote.lent[0]));
  EXPECT_FALSE(lw::wants_hint(word.load()));  // the take cleared it (RemoteChannel then sends CONSUMED)
  EXPECT_TRUE(w.try_write(4));                // no hint needed: the home reads the word
  EXPECT_FALSE(w.try_write(5));
  home->lend_revoke(remote, true);
  w.retire();
  std::vector<int> rest;
  for (int v : ch.reader()) rest.push_back(v);
  EXPECT_EQ(rest, iota_vector(1, 5));
}

// Poison revokes at once, under the channel's lock: nothing lent is taken after it.
TEST(Lending, PoisonRevokesAtOnce) {
  csp::Channel<int> ch{csp::buffer(8)};
  auto home = ch.impl();
  csp::Writer<int> w = ch.writer();
  for (int i = 0; i < 8; ++i) w.write(i);
  std::atomic<std::uint64_t> word{0};
  RecordingBorrower remote(&word);
  ASSERT_NE(home->lend_attach(remote), 0u);
  csp::detail::Waiter park("lend", "test", false);
  ASSERT_EQ(home->lend(remote, park).kind, csp::detail::LendResult::lent);
  ASSERT_TRUE(take(word, remote.lent[0]));
  ch.poison();
  EXPECT_FALSE(take(word, remote.lent[1]));
  EXPECT_EQ(home->lend(remote, park).kind, csp::detail::LendResult::poisoned);
  EXPECT_EQ(home->lend_attach(remote), 0u);
  home->lend_revoke(remote, true);
}

// Another reader at the home revokes at once: it gets the oldest value
// without any answer from the remote (which may be blocked elsewhere).
TEST(Lending, AHomeReaderRevokesWithoutTheRemote) {
  csp::Channel<int> ch{csp::buffer(8)};
  auto home = ch.impl();
  csp::Writer<int> w = ch.writer();
  for (int i = 0; i < 8; ++i) w.write(i);
  std::atomic<std::uint64_t> word{0};
  RecordingBorrower remote(&word);
  ASSERT_NE(home->lend_attach(remote), 0u);
  csp::detail::Waiter park("lend", "test", false);
  ASSERT_EQ(home->lend(remote, park).kind, csp::detail::LendResult::lent);
  ASSERT_TRUE(take(word, remote.lent[0]));
  csp::Reader<int> r = ch.reader();
  EXPECT_EQ(r.try_read(), std::optional<int>(1));
  EXPECT_FALSE(take(word, remote.lent[1]));
  EXPECT_EQ(home->lend(remote, park).kind, csp::detail::LendResult::detached);
  for (int i = 2; i < 8; ++i) EXPECT_EQ(r.try_read(), std::optional<int>(i));
  home->lend_revoke(remote, true);
}

}  // namespace
