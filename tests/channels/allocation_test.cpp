// No heap allocation per message (STYLE guideline 4, DESIGN §4b): this
// binary replaces the global operator new/delete with counting versions and
// measures how many allocations N = 100,000 ping-pong messages cause after a
// warm-up. A constant (pools, first-use growth) is fine; anything that grows
// with N is a per-message allocation.
//
// Its own binary because it replaces operator new for the whole program.
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csp/csp.hpp>
#include <cstdlib>
#include <new>

using namespace std::chrono_literals;

namespace {
std::atomic<std::size_t> g_allocations{0};  // every operator new of the program

void* counted_alloc(std::size_t size, std::size_t align = 0) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (size + align - 1) / align * align)
                                               : std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void* operator new(std::size_t size, std::align_val_t align) { return counted_alloc(size, static_cast<std::size_t>(align)); }
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_alloc(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

constexpr int kWarmUp = 2000;
constexpr int kMessages = 100000;
// Allowed allocations during the measured messages: a constant, far below
// one per 64 messages (1,562), so any per-message pattern fails.
constexpr std::size_t kBudget = 32;

std::size_t allocations() { return g_allocations.load(std::memory_order_relaxed); }

/// The pinging side: warm up, then count allocations (of the whole program)
/// across kMessages round trips.
template <class Ping, class Pong>
std::size_t pinger(Ping& ping, Pong& pong, int messages = kMessages) {
  for (int i = 0; i < kWarmUp; ++i) {
    ping(i);
    if (pong() != i) throw std::logic_error("ping-pong lost a value");
  }
  const std::size_t before = allocations();
  for (int i = 0; i < messages; ++i) {
    ping(i);
    if (pong() != i) throw std::logic_error("ping-pong lost a value");
  }
  return allocations() - before;
}

void echo(csp::Reader<int> in, csp::Writer<int> out, int messages) {
  for (int i = 0; i < kWarmUp + messages; ++i) out.write(in.read());
}

std::size_t ping_pong_processes(csp::Channel<int> there, csp::Channel<int> back) {
  auto [counted, unused] = csp::Parallel(csp::process(
                                             [](csp::Writer<int> out, csp::Reader<int> in) {
                                               auto ping = [&](int v) { out.write(v); };
                                               auto pong = [&] { return in.read(); };
                                               return pinger(ping, pong);
                                             },
                                             there.writer(), back.reader()),
                                         csp::process(echo, there.reader(), back.writer(), kMessages));
  (void)unused;
  return counted;
}

TEST(Allocation, RendezvousPingPongBetweenTwoCoroutines) {
  std::size_t n = ping_pong_processes(csp::Channel<int>{"ping"}, csp::Channel<int>{"pong"});
  RecordProperty("allocations", static_cast<int>(n));
  EXPECT_LE(n, kBudget) << n << " allocations for " << kMessages << " rendezvous round trips";
}

TEST(Allocation, BufferedPingPongBetweenTwoCoroutines) {
  std::size_t n = ping_pong_processes(csp::Channel<int>{csp::buffer(1)}, csp::Channel<int>{csp::buffer(8)});
  EXPECT_LE(n, kBudget) << n << " allocations for " << kMessages << " buffered round trips";
}

TEST(Allocation, PriorityBufferedPingPongBetweenTwoCoroutines) {
  std::size_t n =
      ping_pong_processes(csp::Channel<int>{csp::priority_buffer(2)}, csp::Channel<int>{csp::priority_buffer(2)});
  EXPECT_LE(n, kBudget) << n << " allocations for " << kMessages << " priority-buffered round trips";
}

TEST(Allocation, TimedReadPingPongBetweenTwoCoroutines) {
  csp::Channel<int> there, back;
  auto [counted, unused] = csp::Parallel(csp::process(
                                             [](csp::Writer<int> out, csp::Reader<int> in) {
                                               auto ping = [&](int v) {
                                                 if (!out.write_for(v, 60s)) throw std::logic_error("timed out");
                                               };
                                               auto pong = [&] { return in.read_for(60s).value(); };
                                               return pinger(ping, pong);
                                             },
                                             there.writer(), back.reader()),
                                         csp::process(echo, there.reader(), back.writer(), kMessages));
  (void)unused;
  EXPECT_LE(counted, kBudget) << counted << " allocations for " << kMessages << " timed round trips";
}

TEST(Allocation, SelectPingPongBetweenTwoCoroutines) {
  // The echo side reads through a select: alternation is on the message
  // path of most real networks.
  csp::Channel<int> there, back, idle;
  auto keep_idle = idle.writer();
  auto [counted, unused] = csp::Parallel(
      csp::process(
          [](csp::Writer<int> out, csp::Reader<int> in) {
            auto ping = [&](int v) { out.write(v); };
            auto pong = [&] { return in.read(); };
            return pinger(ping, pong);
          },
          there.writer(), back.reader()),
      csp::process(
          [](csp::Reader<int> in, csp::Reader<int> never, csp::Writer<int> out) {
            for (int i = 0; i < kWarmUp + kMessages; ++i) {
              auto s = csp::PriSelect(csp::input(in), csp::input(never));
              out.write(s.value<int>());
            }
          },
          there.reader(), idle.reader(), back.writer()));
  (void)unused;
  EXPECT_LE(counted, kBudget) << counted << " allocations for " << kMessages << " select round trips";
}

TEST(Allocation, PingPongBetweenMainAndACoroutine) {
  // Fewer messages: every one crosses a thread boundary (futex wake-ups),
  // and 20,000 still tell a per-message pattern from a constant.
  constexpr int messages = 20000;
  csp::Channel<int> there, back;
  auto echo_process = csp::Spawn(csp::process(echo, there.reader(), back.writer(), messages));
  auto out = there.writer();
  auto in = back.reader();
  auto ping = [&](int v) { out.write(v); };
  auto pong = [&] { return in.read(); };
  std::size_t n = pinger(ping, pong, messages);
  echo_process.join();
  EXPECT_LE(n, kBudget) << n << " allocations for " << messages << " main<->coroutine round trips";
}

}  // namespace
