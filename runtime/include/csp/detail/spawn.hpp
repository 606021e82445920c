// csp/detail/spawn.hpp: starting processes and joining them. Used by
// csp/process.hpp and csp/parallel.hpp; not for users.
//
// Invariants
// - A Latch counts processes that have not finished. The last arrive()
//   exchanges `joiner_` to the done mark: that is its last touch of the
//   latch (which lives on the joiner's stack); if a joiner had installed
//   its waiter, the arriver wakes it. The joiner installs its waiter by CAS
//   from null, so exactly one of the two sees the other.
// - The first error is kept (`error_claimed_` decides who writes it) and
//   read by the joiner only after every arrive() happened before its wake.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>

#include <csp/detail/wait.hpp>

namespace csp::detail {

class Latch {
 public:
  explicit Latch(std::size_t count) noexcept
      : remaining_(count), joiner_(count == 0 ? done_mark() : nullptr) {}
  Latch(const Latch&) = delete;
  Latch& operator=(const Latch&) = delete;

  /// A process finished; `error` is its exception (null when it succeeded
  /// or ended by poison/retire). The last arrival's exchange of `joiner_`
  /// is its last touch of the latch, so the joiner may then destroy it.
  void arrive(std::exception_ptr error) noexcept;
  /// Parks until every process arrived. Does not throw.
  void wait() noexcept;
  [[nodiscard]] bool done() const noexcept { return joiner_.load(std::memory_order_acquire) == done_mark(); }
  /// The first error that arrived (valid after wait()).
  [[nodiscard]] std::exception_ptr first_error() const noexcept { return first_error_; }

 private:
  static Waiter* done_mark() noexcept { return reinterpret_cast<Waiter*>(alignof(Waiter)); }
  std::atomic<std::size_t> remaining_;           // processes still running
  std::atomic<Waiter*> joiner_;                  // null, the joiner's waiter, or done_mark()
  std::atomic<bool> error_claimed_{false};       // set by the first failing process
  std::exception_ptr first_error_;               // written once, by the claimer
};

/// What a started process runs. Implemented by csp::Process<R>'s body.
class ProcessBody {
 public:
  virtual ~ProcessBody() = default;
  /// Runs the callable, stores its result, destroys callable and arguments
  /// (so channel ends leave their sides at once) and returns the exception
  /// to report to the joiner, if any. Poison/retire propagation is done here.
  virtual std::exception_ptr run() noexcept = 0;
  /// For messages and deadlock reports.
  std::string name_;
};

enum class Placement { coroutine, thread };

/// Starts `body`; when it finishes, `latch->arrive()` is called. A
/// coroutine started from a coroutine goes on the same worker; from a
/// thread, on a worker chosen round-robin.
void start(std::unique_ptr<ProcessBody> body, Latch* latch, Placement placement);

/// A process started by Spawn: joined explicitly or by its spawner's end.
struct SpawnState {
  Latch latch_{1};
  std::atomic<bool> joined_{false};
  virtual ~SpawnState() = default;
  /// Joins once; rethrows the process's error on the first join.
  void join();
};

/// Starts a spawned process and records it with the calling context, which
/// joins it when it finishes (or, for main, at runtime shutdown).
void spawn(std::shared_ptr<SpawnState> state, std::unique_ptr<ProcessBody> body, Placement placement);

/// A unique number for default process names.
std::uint64_t next_process_id() noexcept;

}  // namespace csp::detail
