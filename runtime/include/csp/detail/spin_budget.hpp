// csp/detail/spin_budget.hpp: how long the next wait may spin before it
// parks, learnt from the waits before it. One policy for every spinning
// wait: the shm ring, the pipe/socket streams and a blocked thread.
//
// Spin the full bound while waits are short enough for spinning to catch
// them: parking costs the peer a wake-up latency (25-45 us on the 2-vCPU
// VM), and a bound shorter than that would let one hiccup turn a ping-pong
// into both sides parking on every message (measured on the shm ring: 25 us
// hops instead of 0.1 us). After kSlowAfter waits in a row longer than the
// bound the peer is slow: spin only slow_ns (catching a peer that just
// answers quickly again), with a full spin every kProbeEvery-th wait.
//
// Not synchronised: each budget belongs to one waiting side (a stream's
// reader or writer, a thread).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace csp::detail {

struct SpinBudget {
  static constexpr unsigned kSlowAfter = 4;
  static constexpr unsigned kProbeEvery = 8;

  /// A spin bound in ns from environment variable `name` (microseconds,
  /// 0 to 1,000,000), else `default_us`.
  static std::int64_t max_ns_from_env(const char* name, std::int64_t default_us) noexcept {
    if (const char* env = std::getenv(name)) {
      char* end = nullptr;
      const long long us = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && us >= 0 && us <= 1000000) return static_cast<std::int64_t>(us) * 1000;
    }
    return default_us * 1000;
  }

  std::int64_t max_ns = 0;      // the full bound (0: never spin)
  std::int64_t slow_ns = 2000;  // the bound while the peer is slow
  unsigned long_waits = 0;      // consecutive waits longer than max_ns
  unsigned since_probe = 0;     // short spins since the last full one

  /// How long the next wait may spin.
  std::int64_t next_limit_ns() noexcept {
    if (long_waits < kSlowAfter || ++since_probe % kProbeEvery == 0) return max_ns;
    return std::min(max_ns, slow_ns);
  }
  /// Records how long a wait took, spun or parked.
  void learn(std::int64_t waited_ns) noexcept {
    if (waited_ns <= max_ns)
      long_waits = 0;
    else if (long_waits < kSlowAfter)
      ++long_waits;
  }
};

// Contended CPUs, process-wide (wait.cpp). A spin that yields its CPU
// between polls (a pipe or socket wait of a thread, an idle worker polling
// its reactor) and finds one round took longer than kDescheduledNs lost the
// CPU to another program, for a time slice: it stops, calls
// note_cpus_contended(), and no such spin of this process runs while
// cpus_contended() (20 ms, doubling up to 1 s while the probes after each
// period keep losing their CPU).
inline constexpr std::int64_t kDescheduledNs = 200'000;
bool cpus_contended(std::chrono::steady_clock::time_point now) noexcept;
void note_cpus_contended(std::chrono::steady_clock::time_point now) noexcept;

}  // namespace csp::detail
