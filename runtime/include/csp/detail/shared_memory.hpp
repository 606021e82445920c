// csp/detail/shared_memory.hpp: the pieces interprocess primitives and
// SharedValue / SharedArray are built from. Not for users.
//
// - SharedBlock: zero-filled anonymous shared memory (Boost.Interprocess
//   anonymous_shared_memory, MAP_SHARED|MAP_ANONYMOUS). A fork()ed child
//   (every os_process) inherits it at the same address, so pointers into it
//   stay valid there and both sides see each other's writes.
// - SharedLock: a lock whose whole state is two atomic words in such a
//   block. Robust: the word holds the holder's pid, and a waiter that finds
//   the holder's OS process gone takes the lock over (as a robust pthread
//   mutex does with EOWNERDEAD), so a child that dies holding it cannot
//   wedge the others. The data it guarded may then be half-updated.
//
// Invariants of SharedLock
// - `owner_` is 0 when free, else the pid of the OS process that holds it;
//   it changes only by CAS (lock, take-over) and by the holder's release
//   store in unlock().
// - `sleepers_` counts threads inside futex_wait on `owner_`; unlock() wakes
//   one only when it is non-zero. A sleeper's futex_wait re-checks the word
//   it saw, so an unlock between its look and its sleep is never lost.
// - Coroutines never sleep in the kernel: they poll with a bounded back-off
//   (yield, then sleep_for up to 1 ms), so they never block their worker.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <csp/detail/wait.hpp>

namespace csp::detail {

/// Zero-filled anonymous shared memory inherited by forked children.
class SharedBlock {
 public:
  /// Maps at least `bytes` bytes. Throws csp::SystemError if it cannot.
  explicit SharedBlock(std::size_t bytes);
  ~SharedBlock();
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;

  [[nodiscard]] void* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct Region;                    // the Boost.Interprocess mapped_region
  std::unique_ptr<Region> region_;  // unmapped (in this process) on destruction
  void* data_ = nullptr;            // start of the mapping
  std::size_t size_ = 0;            // bytes mapped
};

/// A robust lock living in shared memory (see the file comment).
struct SharedLock {
  std::atomic<std::uint32_t> owner_{0};     // 0 free, else the holder's pid
  std::atomic<std::uint32_t> sleepers_{0};  // threads asleep on owner_

  /// Takes the lock, waiting at most until `deadline`; false on timeout.
  bool lock_until(Deadline deadline);
  bool try_lock() noexcept;
  /// Releases the lock. Throws csp::Error if it is not held.
  void unlock();
};

/// Futex on a 32-bit word in shared memory (not FUTEX_PRIVATE: the waker
/// may be another OS process). Waits while *word == expected, at most until
/// `deadline`; spurious returns are possible.
void shared_futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) noexcept;
void shared_futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept;

/// Waits, the way an interprocess primitive must, until `ready()` returns
/// true or `deadline` passes (false). Threads sleep on the futex `word`
/// (counted in `sleepers`); coroutines poll with a bounded back-off. The
/// waker changes `word` before it looks at `sleepers`. `stalled()` is called
/// about every 100 ms of waiting (robust take-over checks).
template <class Ready, class Stalled>
bool shared_wait_until(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& sleepers, Deadline deadline,
                       Ready ready, Stalled stalled);

/// One back-off step for a coroutine polling shared state: yields the first
/// few rounds, then sleeps 20 us, 40 us, ... up to 1 ms, never past `deadline`.
void shared_backoff(unsigned round, Deadline deadline);

template <class Ready, class Stalled>
bool shared_wait_until(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& sleepers, Deadline deadline,
                       Ready ready, Stalled stalled) {
  const bool coroutine = in_coroutine();
  auto next_stall_check = Clock::now() + std::chrono::milliseconds(100);
  for (unsigned round = 0;; ++round) {
    // SYNC POINT: seq_cst load pairs with the waker's seq_cst change of
    // `word` followed by its read of `sleepers` (Dekker-style): either we
    // see its change here, or it sees our sleeper count, or the futex sees
    // the word differ from `seen`.
    std::uint32_t seen = word.load(std::memory_order_seq_cst);
    if (ready()) return true;
    auto now = Clock::now();
    if (deadline != forever && now >= deadline) return false;
    if (now >= next_stall_check) {
      stalled();
      next_stall_check = now + std::chrono::milliseconds(100);
      continue;
    }
    if (coroutine) {
      shared_backoff(round, deadline);
    } else {
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      shared_futex_wait(&word, seen, std::min(deadline, next_stall_check));
      sleepers.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
}

}  // namespace csp::detail
