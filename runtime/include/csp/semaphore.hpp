// csp/semaphore.hpp: csp::Semaphore, a counting semaphore.
//
//   csp::Semaphore slots{4};                      // coroutines, threads, workers
//   csp::Semaphore xs{1, csp::interprocess};      // also os_process children
//   slots.acquire(); ... slots.release();
//
// A cheap shared handle: copies refer to the same semaphore, so it can be
// passed to processes as an argument.
// - acquire() takes a permit, parking the caller (never its worker) while
//   none is free. In-process, waiters are served first come, first served
//   and release() hands its permit straight to the oldest waiter.
// - release(n) returns n permits. Any process may release; there is no
//   owner (Python's Semaphore, not BoundedSemaphore).
// - If every process of the program is blocked and nothing can wake them,
//   a blocked acquire() throws csp::Deadlock (in-process semaphores only:
//   an interprocess one may be released by another OS process).
// - Interprocess (csp::interprocess): the count lives in shared memory
//   (csp/interprocess.hpp). A permit held by a child that dies is lost,
//   as with any semaphore.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include <csp/detail/wait.hpp>
#include <csp/interprocess.hpp>

namespace csp {

namespace detail {
class SemaphoreState;
}

class Semaphore {
 public:
  /// A semaphore holding `initial` permits, shared within this OS process.
  explicit Semaphore(std::size_t initial = 0);
  /// A semaphore in shared memory, shared with os_process children forked
  /// after it was made. At most 2^31 permits.
  Semaphore(std::size_t initial, interprocess_t);

  /// Takes one permit, parking until one is free. Throws csp::Deadlock.
  void acquire();
  /// Takes a permit if one is free now; never blocks.
  bool try_acquire();
  /// Waits at most `d` for a permit; false if none came.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    return try_acquire_until(detail::Clock::now() + std::chrono::ceil<detail::Clock::duration>(d));
  }
  bool try_acquire_until(std::chrono::steady_clock::time_point t);
  /// Returns `n` permits, waking as many waiters.
  void release(std::size_t n = 1);

  /// Permits free right now (a snapshot, for tests and reports).
  [[nodiscard]] std::size_t available() const;
  [[nodiscard]] bool is_interprocess() const noexcept;

 private:
  std::shared_ptr<detail::SemaphoreState> state_;  // shared by copies
};

}  // namespace csp
