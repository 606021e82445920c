// csp/barrier.hpp: csp::Barrier, occam's / JCSP's barrier.
//
//   csp::Barrier b{3};                      // 3 processes enrolled
//   csp::Parallel(csp::process(worker, b) * 3);   // each calls b.sync()
//
// A cheap shared handle: copies refer to the same barrier.
// - sync() parks the caller until every enrolled process has called sync()
//   in this phase; then all of them continue and the next phase begins.
// - enroll() adds one process to the enrolled set; resign() takes one away
//   (a process that will sync no more). If the others already wait, a
//   resign() that makes them the whole set releases them.
// - A process must be enrolled to sync; with one enrolled, sync() returns
//   at once.
// - If every process is blocked and nothing can wake them (say one enrolled
//   process waits on a channel instead of syncing), a blocked sync() throws
//   csp::Deadlock (in-process barriers only).
// - Interprocess: at most 65535 enrolled. A dead child that stayed enrolled
//   keeps the others waiting (resign before leaving).
#pragma once

#include <cstddef>
#include <memory>

#include <csp/interprocess.hpp>

namespace csp {

namespace detail {
class BarrierState;
}

class Barrier {
 public:
  /// A barrier with `enrolled` processes enrolled, shared within this OS process.
  explicit Barrier(std::size_t enrolled = 0);
  /// A barrier in shared memory, shared with os_process children forked after it.
  Barrier(std::size_t enrolled, interprocess_t);

  /// Waits for every enrolled process to sync. Throws csp::Deadlock.
  void sync();
  /// One more process takes part from the next sync on.
  void enroll();
  /// One process leaves; may complete the phase the others wait in.
  /// Throws csp::Error if nobody is enrolled.
  void resign();
  /// Processes enrolled now (a snapshot).
  [[nodiscard]] std::size_t enrolled() const;

  [[nodiscard]] bool is_interprocess() const noexcept;

 private:
  std::shared_ptr<detail::BarrierState> state_;  // shared by copies
};

}  // namespace csp
