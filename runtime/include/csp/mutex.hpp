// csp/mutex.hpp: csp::Mutex, mutual exclusion between processes.
//
//   csp::Mutex m;                          // coroutines, threads, workers
//   csp::Mutex shared{csp::interprocess};  // also os_process children
//   { std::lock_guard lock(m); ... }       // Lockable and TimedLockable
//
// A cheap shared handle: copies refer to the same mutex.
// - lock() parks the caller (never its worker) while another holds the
//   mutex. A coroutine may hold it across channel operations and sleeps,
//   and may unlock it from whichever worker it runs on by then: ownership
//   belongs to the process, not to an OS thread. Not recursive.
// - In-process, waiters are served first come, first served: unlock()
//   hands the mutex straight to the oldest waiter.
// - If every process of the program is blocked and nothing can wake them,
//   a blocked lock() throws csp::Deadlock (in-process mutexes only).
// - Interprocess: robust. A waiter that finds the holder's OS process dead
//   takes the mutex over (within about 100 ms); the data it guarded may be
//   half-updated, as with a robust pthread mutex after EOWNERDEAD.
// - unlock() of a mutex nobody holds throws csp::Error.
#pragma once

#include <chrono>
#include <memory>

#include <csp/detail/wait.hpp>
#include <csp/interprocess.hpp>

namespace csp {

namespace detail {
class MutexState;
}

class Mutex {
 public:
  /// A mutex shared within this OS process.
  Mutex();
  /// A mutex in shared memory, shared with os_process children forked after it.
  explicit Mutex(interprocess_t);

  /// Parks until the mutex is free and takes it. Throws csp::Deadlock.
  void lock();
  /// Takes the mutex if it is free now; never blocks.
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return try_lock_until(detail::Clock::now() + std::chrono::ceil<detail::Clock::duration>(d));
  }
  bool try_lock_until(std::chrono::steady_clock::time_point t);
  /// Releases the mutex (handing it to the oldest waiter, if any).
  void unlock();

  [[nodiscard]] bool is_interprocess() const noexcept;

 private:
  std::shared_ptr<detail::MutexState> state_;  // shared by copies
};

}  // namespace csp
