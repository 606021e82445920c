// csp/detail/spin_lock.hpp: a test-and-test-and-set lock for short critical
// sections (a channel's state, a run queue). After a short spin it yields
// the thread, so a preempted holder on an oversubscribed machine is not
// spun against for a whole time slice.
#pragma once

#include <atomic>
#include <sched.h>

namespace csp::detail {

/// One polite step of a spin loop (PAUSE on x86, YIELD on ARM).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class SpinLock {
 public:
  void lock() noexcept {
    // SYNC POINT: acquire pairs with the release in unlock().
    if (!flag_.exchange(true, std::memory_order_acquire)) return;
    for (unsigned spins = 0;; ++spins) {
      while (flag_.load(std::memory_order_relaxed)) {
        if (++spins < 256) {
          cpu_relax();
        } else {
          ::sched_yield();
          spins = 0;
        }
      }
      if (!flag_.exchange(true, std::memory_order_acquire)) return;
    }
  }
  bool try_lock() noexcept {
    return !flag_.load(std::memory_order_relaxed) && !flag_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};  // true while held
};

}  // namespace csp::detail
