// csp/detail/settle.hpp: pipelined writes and the points where they settle.
//
// A write to a buffered channel whose home is in another OS process may
// return before the home has put the value in its buffer (the transport
// pipelines it; see csp/transport/remote_channel.hpp). To keep CSP's
// causality, such a write is "unsettled" until its home answered, and the
// writing process settles it before it does anything another process could
// observe: any operation on another channel (or a read, timed or polled
// operation, select or poison on the same one), a synchronisation
// primitive, and the end of the process. Settling waits for the home's
// answers and throws what a write would have thrown (ChannelPoisoned,
// ChannelRetired) had it waited.
//
// Invariant: a context (coroutine or thread) has unsettled writes on at
// most one channel, because any operation on another channel settles them
// first. Each context keeps them in its own UnsettledWrites (a coroutine's
// in its Task, a thread's in a thread_local), touched by that context only,
// so a stream of pipelined writes on one channel costs no lock and no
// atomic read-modify-write per write (one would wait for the previous
// write's bytes to reach the peer's cache). `g_unsettled_contexts` counts
// the contexts whose record is not empty, so the check on every operation
// is one relaxed load. A context only reads the count for its own change,
// which it made itself (a coroutine that moved to another thread did so
// through a synchronising hand-off), so a relaxed load sees it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace csp::detail {

/// What can settle pipelined writes: the connection they went out on.
class Settleable {
 public:
  /// Waits until the home answered every pipelined write up to `ticket`;
  /// throws what a failed one would have thrown.
  virtual void settle(std::uint64_t ticket) = 0;

 protected:
  ~Settleable() = default;
};

extern std::atomic<std::size_t> g_unsettled_contexts;

/// One context's unsettled writes (empty: none). Only that context touches it.
struct UnsettledWrites {
  std::shared_ptr<Settleable> on;  // their connection, kept alive until settled; null: none
  std::uint64_t ticket = 0;        // settle up to this ticket
  UnsettledWrites() = default;
  UnsettledWrites(const UnsettledWrites&) = delete;
  UnsettledWrites& operator=(const UnsettledWrites&) = delete;
  /// A context that ends unsettled (it threw first) stops being counted.
  ~UnsettledWrites() {
    if (on) g_unsettled_contexts.fetch_sub(1, std::memory_order_relaxed);
  }
};

/// Settles the calling context's pipelined writes unless they are on `keep`.
void settle_writes_slow(const Settleable* keep);

/// Called before every operation a process can be observed by.
inline void settle_writes(const Settleable* keep = nullptr) {
  if (g_unsettled_contexts.load(std::memory_order_relaxed) != 0) [[unlikely]]
    settle_writes_slow(keep);
}

/// Records that the calling context has pipelined writes on `on`, up to
/// `ticket` (after settle_writes(on.get()) made sure it has none elsewhere).
/// Copies `on` only when the context had none unsettled.
void note_unsettled(const std::shared_ptr<Settleable>& on, std::uint64_t ticket);

}  // namespace csp::detail
