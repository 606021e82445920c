// csp/detail/wait.hpp: the one blocking mechanism every csp primitive uses.
//
// A blocking operation builds a Waiter on its own stack, publishes it where a
// peer can find it (a channel's queue, a latch, a timer), and calls wait().
// Whoever completes the operation first wins the Waiter by one CAS on
// `selected_` (try_select), does its part (moves a value, records a result),
// and then calls wake(). The owner returns from wait() only after that wake,
// so everything the winner wrote before wake() is visible to it.
//
// Invariants
// - `selected_` goes from kWaiting to one non-zero token exactly once per
//   Waiter; only the winner of that CAS calls wake(), exactly once.
// - The owner does not touch state the winner writes until wait() returns.
// - A Waiter lives on its owner's stack and is unlinked from every queue
//   before its owner's frame is left.
// - A Waiter with a `guard_` (a blocking channel operation with no deadline:
//   it sits in one channel's queue and nothing else can time it out) is
//   selected only by a holder of *guard_ (the channel's lock): the channel
//   selects it by select_locked(), a load and a store instead of a CAS, and
//   the deadlock detector takes *guard_ around its try_select.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

#include <csp/detail/spin_lock.hpp>

namespace csp::detail {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
inline constexpr Deadline forever = Deadline::max();

/// Tokens a Waiter can be selected with. Values from kFirstGuard up are
/// the caller's own (for example an alternation's guard index).
enum : std::uintptr_t {
  kWaiting = 0,    // not selected yet
  kTimedOut = 1,   // the deadline passed first
  kDeadlock = 2,   // the runtime found every process blocked
  kWoken = 3,      // generic completion (latches, events)
  kPoisoned = 4,   // the channel was poisoned while waiting
  kRetired = 5,    // the other side retired while waiting
  kFirstGuard = 16,
};

class Parker;  // an execution context that can block: a coroutine or a thread

/// The calling context's parker (the running coroutine, or this thread).
Parker* current_parker() noexcept;

/// Makes a parked context runnable again. Called only by the winner of a
/// Waiter's selection, once per wait.
void unpark(Parker* parker) noexcept;

struct Waiter {
  /// Token of the winner; kWaiting until someone selects this waiter.
  std::atomic<std::uintptr_t> selected_{kWaiting};
  /// Who blocks on this waiter.
  Parker* parker_ = current_parker();
  /// Operation for deadlock reports ("read", "write", "select", ...).
  const char* what_ = "wait";
  /// Object waited on, for deadlock reports (a channel's name).
  std::string_view object_{};
  /// False for waits the deadlock detector must not break (joining
  /// children: they are reported, and they finish once their children do).
  bool deadlockable_ = true;
  /// Non-null: `selected_` changes only under this lock (see the invariants).
  SpinLock* guard_ = nullptr;

  Waiter() = default;
  Waiter(const char* what, std::string_view object, bool deadlockable = true) noexcept
      : what_(what), object_(object), deadlockable_(deadlockable) {}
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  /// First caller wins; the winner must call wake() after its hand-off.
  bool try_select(std::uintptr_t token) noexcept {
    std::uintptr_t expected = kWaiting;
    // SYNC POINT: acquire pairs with nothing (a fresh waiter); the release
    // half orders nothing either: the hand-off is published by wake().
    return selected_.compare_exchange_strong(expected, token, std::memory_order_acq_rel,
                                             std::memory_order_acquire);
  }
  /// try_select by a holder of *guard_ (or for any waiter by the only
  /// possible selector): no read-modify-write needed.
  bool select_locked(std::uintptr_t token) noexcept {
    if (guard_ == nullptr) return try_select(token);
    if (selected_.load(std::memory_order_relaxed) != kWaiting) return false;
    // SYNC POINT: the release orders nothing the owner needs (the hand-off
    // is published by wake()); every selector holds *guard_.
    selected_.store(token, std::memory_order_release);
    return true;
  }
  /// Wakes the owner; only the winner of try_select calls this.
  void wake() noexcept { unpark(parker_); }
  [[nodiscard]] std::uintptr_t token() const noexcept {
    return selected_.load(std::memory_order_acquire);
  }
};

/// Blocks the caller until `w` is selected and woken. When `deadline`
/// passes first, the caller selects kTimedOut itself (if it still can).
/// Returns the winning token. Never blocks the worker thread of a coroutine.
std::uintptr_t wait(Waiter& w, Deadline deadline);

/// True when called from a csp coroutine (not a thread or main).
bool in_coroutine() noexcept;

/// Registers / unregisters a source of future wake-ups that is neither a
/// running process nor a timer (an fd watched by a reactor, a child OS
/// process). While any exists, blocked processes are not a deadlock.
void add_wake_source() noexcept;
void remove_wake_source() noexcept;

}  // namespace csp::detail
