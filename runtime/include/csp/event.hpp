// csp/event.hpp: csp::Event, a flag processes can wait for (Python's Event).
//
//   csp::Event ready;                       // or csp::Event{csp::interprocess}
//   ready.wait();   ...   ready.set();
//
// A cheap shared handle: copies refer to the same event.
// - set() raises the flag and wakes every waiter; clear() lowers it.
// - wait() returns at once while the flag is up, else parks the caller
//   (never its worker) until the next set(). A waiter woken by set()
//   returns even if clear() came right after (it saw the event happen).
// - If every process is blocked and nothing can wake them, a blocked wait()
//   throws csp::Deadlock (in-process events only).
#pragma once

#include <chrono>
#include <memory>

#include <csp/detail/wait.hpp>
#include <csp/interprocess.hpp>

namespace csp {

namespace detail {
class EventState;
}

class Event {
 public:
  /// An event shared within this OS process; starts cleared.
  Event();
  /// An event in shared memory, shared with os_process children forked after it.
  explicit Event(interprocess_t);

  /// Raises the flag and wakes every waiter.
  void set();
  /// Lowers the flag.
  void clear();
  [[nodiscard]] bool is_set() const;
  /// Parks until the flag is up. Throws csp::Deadlock.
  void wait();
  /// Waits at most `d`; returns whether the event was set (Python's
  /// Event.wait(timeout)).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until(detail::Clock::now() + std::chrono::ceil<detail::Clock::duration>(d));
  }
  bool wait_until(std::chrono::steady_clock::time_point t);

  [[nodiscard]] bool is_interprocess() const noexcept;

 private:
  std::shared_ptr<detail::EventState> state_;  // shared by copies
};

}  // namespace csp
