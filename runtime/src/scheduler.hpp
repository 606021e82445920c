// scheduler.hpp: workers, coroutines (tasks), thread parkers, and the
// accounting behind the deadlock report. Private to the runtime.
//
// Invariants
// - A task is in at most one of: running on a worker (`Worker::current_`),
//   a worker's `runnext_` slot, a worker's `queue_` or `local_`, or parked.
//   Its `ctx_` holds its continuation exactly while it is not running.
// - `local_` (the yielded processes, tasks a wake-up displaced from
//   `runnext_`, and what either moved from `queue_` ahead of them)
//   belongs to its worker's thread while `phase_` is odd (the thread is in
//   the scheduler: from a switch point until the next task runs, and in the
//   loop), with no lock. A thief takes from it only while `phase_` is even,
//   after it announced itself in `steal_req_` and ran an asymmetric barrier
//   (membarrier); the owner reads `steal_req_` after making `phase_` odd, so
//   one of them always sees the other (see Worker::enter, steal_local_into).
//   Everything in `local_` was queued before everything in `queue_`.
// - A task is made runnable only after its continuation has been saved:
//   after_switch() on the far side of its switch stores kParked (release),
//   and unpark() waits for kParked (acquire) before scheduling it. Only the
//   winner of a Waiter unparks, once, so no read-modify-write is needed.
//   A task that wins its own Waiter while parking (its timer fired as it
//   polled) is "self-notified" and does not switch out at all.
// - `live_` counts busy workers + running registered threads in its low 32
//   bits and wake sources (armed timers, watched fds, children) in its high
//   32 bits. It is zero only when nothing can ever wake a parked waiter;
//   whoever brings it to zero runs check_deadlock().
// - A worker counts as busy from the moment it wakes until it goes to sleep
//   in epoll; `idle_counted_` records that it has taken itself out of
//   `live_`. Whoever counts it back in adds to `live_` first and then
//   exchanges the flag to false; if the flag was false already, it takes its
//   addition back. Adding after the exchange would leave a window in which
//   the worker, counted busy by the flag but not yet in `live_`, could run,
//   go idle again and subtract a count that belongs to someone else: `live_`
//   would reach zero while a thread still launches processes (a false
//   deadlock report, seen under TSan with a 2,000-process ring).
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <csp/detail/spin_budget.hpp>
#include <csp/detail/settle.hpp>
#include <csp/detail/spawn.hpp>
#include <csp/detail/spin_lock.hpp>
#include <csp/detail/wait.hpp>
#include <csp/runtime.hpp>

#include "stack.hpp"

// The sanitizers' allocators in GCC 12 take no lock around fork(2): a child
// forked while another thread allocates inherits a held lock and hangs at
// its first `new`. In those builds a fork first stops the other workers at a
// switch point (quiesce_for_fork). glibc's malloc needs no such gate.
#if defined(CSP_ASAN) || defined(CSP_TSAN)
#define CSP_FORK_GATE 1
#endif

namespace csp::detail {

class Worker;
struct Scheduler;

class Parker {
 public:
  enum class Kind : std::uint8_t { task, thread };
  explicit Parker(Kind kind) noexcept : kind_(kind) {}
  virtual ~Parker() = default;

  const Kind kind_;
  /// Task: kRunning/kParked. Thread: futex word: 0 = waiting awake
  /// (spinning) or not waiting, 1 = notified, 2 = asleep in futex_wait (the
  /// notifier must wake it; see wait_thread in wait.cpp).
  std::atomic<std::uint32_t> state_{0};
  /// The waiter this context blocks on, for the deadlock detector.
  std::atomic<Waiter*> waiting_on_{nullptr};
  /// For reports.
  std::string name_;
  /// Spawned processes not yet joined; touched only by this context.
  std::vector<std::shared_ptr<SpawnState>> spawned_;
  /// Registry links, guarded by Scheduler::registry_mutex_.
  Parker* reg_prev_ = nullptr;
  Parker* reg_next_ = nullptr;
};

enum : std::uint32_t { kRunning = 0, kParked = 2 };

/// A coroutine process.
class Task final : public Parker {
 public:
  Task() noexcept : Parker(Kind::task) {}
  ~Task() override;

  boost::context::detail::fcontext_t ctx_ = nullptr;  // continuation while not running
  Worker* worker_ = nullptr;             // worker it runs on or is queued on
  std::unique_ptr<ProcessBody> body_;    // destroyed as the process finishes
  Latch* latch_ = nullptr;               // told when the process finishes
  Stack stack_;                          // its stack (canary checked at switches)
  enum class Switch : std::uint8_t { park, yield, die } switching_ = Switch::park;
  bool self_notified_ = false;           // unparked by itself while parking (owner only)
  UnsettledWrites unsettled_;            // its pipelined writes not yet settled (owner only; settle.cpp)
#if defined(CSP_ASAN)
  void* asan_fake_stack_ = nullptr;
#endif
#if defined(CSP_TSAN)
  void* tsan_fiber_ = nullptr;
#endif
};

/// The parker of a thread (main, thread_process, any foreign thread).
class ThreadParker final : public Parker {
 public:
  ThreadParker() noexcept : Parker(Kind::thread) {}
  Scheduler* registered_with_ = nullptr;  // scheduler whose live_ counts this thread
  bool in_registry_ = false;              // linked in that scheduler's registry
  SpinBudget spin_;                       // how long its waits spin (owner only; wait.cpp)
};

/// A growable ring of task pointers (a run queue). Not synchronised.
class TaskRing {
 public:
  TaskRing() : slots_(64), mask_(63) {}
  [[nodiscard]] bool empty() const noexcept { return head_ == tail_; }
  [[nodiscard]] std::size_t size() const noexcept { return tail_ - head_; }
  void push_back(Task* t) {
    if (size() > mask_) [[unlikely]]
      grow();
    slots_[tail_++ & mask_] = t;
  }
  Task* pop_front() noexcept { return slots_[head_++ & mask_]; }
  Task* pop_back() noexcept { return slots_[--tail_ & mask_]; }

 private:
  __attribute__((noinline)) void grow() {
    std::vector<Task*> bigger(slots_.size() * 2);
    for (std::size_t i = head_, j = 0; i != tail_; ++i, ++j) bigger[j] = slots_[i & mask_];
    tail_ = size();
    head_ = 0;
    slots_.swap(bigger);
    mask_ = slots_.size() - 1;
  }
  std::vector<Task*> slots_;  // power-of-two sized
  std::size_t mask_;          // slots_.size() - 1
  std::size_t head_ = 0;      // next to pop (monotonic; masked on access)
  std::size_t tail_ = 0;      // next free
};

struct TimerNode {
  Deadline deadline_;
  Waiter* waiter_ = nullptr;
  std::size_t index_ = static_cast<std::size_t>(-1);  // position in the heap, or -1
};

struct FdWait {
  Waiter* waiter_ = nullptr;
  bool fired_ = false;  // guarded by Worker::fd_mutex_
};

class Worker {
 public:
  Worker(Scheduler& sched, unsigned index);
  ~Worker();
  void start();
  void run();  // the worker thread's loop

  /// Next task to run on this worker, or null. Owner thread only, in the
  /// scheduler (phase_ odd).
  Task* pick_next() noexcept;
  /// pick_next() past the runnext_ slot (`next`: its occupant, if any).
  Task* pick_queued(Task* next) noexcept;
  /// Fires due timers and ready fds now and then (every 64 calls) while
  /// the worker is busy. Owner thread only.
  void poll_due() noexcept;
  void poll_due_now() noexcept;
  /// A running task enters the scheduler (phase_ odd; local_ is the owner's
  /// from here) and answers a thief's request. Owner thread only.
  void enter() noexcept;
  /// Back to the running task without a switch (phase_ even).
  void leave() noexcept;
  /// Gives half of local_ to the thief that asked, or waits for a thief
  /// taking from local_. Owner thread only, phase_ odd.
  void answer_steal() noexcept;
  /// Moves queue_ to the back of local_. Owner thread only, phase_ odd.
  void drain_queue() noexcept;
  /// Queues at the back (any thread).
  void push(Task* task) noexcept;
  void push_many(Task* const* tasks, std::size_t n) noexcept;
  /// Takes up to half of this worker's queue into `out` (thieves).
  std::size_t steal_into(std::vector<Task*>& out) noexcept;
  /// Takes up to half of this worker's local_ into `out` if its owner runs a
  /// task, else asks the owner to give some at its next switch (thieves).
  std::size_t steal_local_into(std::vector<Task*>& out, unsigned thief) noexcept;
  /// Steals half of `victim`'s queue (or local_); returns one to run (others
  /// queued here).
  Task* steal_from(Worker& victim) noexcept;
  /// Idle with fds to wait for: polls them (yielding the CPU between polls)
  /// for up to fd_spin_'s bound; true once there is something to run.
  bool spin_for_fds(Clock::time_point now, std::size_t timers_seen) noexcept;
  /// An idle spin found something to do: a task queued or woken, a timer
  /// added or removed since it counted `timers_seen`, a stop or a fork.
  [[nodiscard]] bool spin_should_end(std::size_t timers_seen) const noexcept;
  [[nodiscard]] bool has_queued() const noexcept {
    return queue_size_.load(std::memory_order_relaxed) != 0 || local_size_.load(std::memory_order_relaxed) != 0;
  }
  /// Makes `task` the next to run here; a task it displaces from runnext_
  /// goes to the back of local_. Owner thread only (a running task of this
  /// worker, or the worker's loop).
  void run_next(Task* task) noexcept {
    task->worker_ = this;
    // runnext_ is written only by its owner; others merely peek at it.
    Task* displaced = runnext_.load(std::memory_order_relaxed);
    runnext_.store(task, std::memory_order_relaxed);
    if (displaced) [[unlikely]]
      queue_local(displaced);
  }
  /// Queues `task` at the back of local_, as yield() does: no lock and no
  /// read-modify-write (see the invariants). Owner thread only.
  void queue_local(Task* task) noexcept;
  /// Wakes the worker if it sleeps in epoll; false if it did not sleep or
  /// another waker already woke it.
  bool notify() noexcept;
  /// Counts the worker busy again if it had counted itself out.
  void make_busy() noexcept;

  void add_timer(TimerNode* node);
  /// Removes the node if still armed; returns true if it was.
  bool remove_timer(TimerNode* node) noexcept;
  /// Fires due timers; returns ms until the next, -1 if none.
  int run_timers() noexcept;
  void poll_fds(int timeout_ms) noexcept;

  Scheduler& sched_;
  const unsigned index_;
  std::thread thread_;
  boost::context::detail::fcontext_t main_ctx_ = nullptr;  // the loop's continuation while a task runs
  Task* current_ = nullptr;              // running task; null while in the loop
  Task* prev_ = nullptr;                 // who switched away (read by after_switch)
  bool prev_is_main_ = false;            // the loop switched away
  std::atomic<Task*> runnext_{nullptr};  // woken by a task of this worker: runs next
  unsigned runnext_streak_ = 0;          // consecutive runnext picks (fairness)
  unsigned tick_ = 0;                    // picks since the last timer check
  SpinLock queue_lock_;                  // guards queue_
  TaskRing queue_;                       // FIFO of ready tasks queued by anyone (stealable)
  std::atomic<std::size_t> queue_size_{0};
  std::atomic<std::uint64_t> dequeues_{0};   // tasks taken from queue_ or local_ by the owner (thieves watch progress)
  // The owner's own FIFO of ready tasks, ahead of queue_: yield() queues
  // there without a lock or a read-modify-write (see the invariants).
  TaskRing local_;
  std::atomic<std::size_t> local_size_{0};  // local_.size() for thieves (a hint)
  std::atomic<std::uint64_t> phase_{1};     // odd: the owner thread is in the scheduler
  // 0, or thief index + 1 (a request, answered at the owner's next switch),
  // with kStealTaking while that thief takes from local_.
  std::atomic<std::uint32_t> steal_req_{0};
  static constexpr std::uint32_t kStealTaking = 1u << 31;
  bool asymmetric_ = false;              // thieves run membarrier; else enter() fences
  std::atomic<bool> sleeping_{false};    // in epoll_wait (or about to be)
  std::atomic<bool> spinning_{false};    // idle, looking for work before it sleeps
  // Polling this worker's fds before it sleeps (spin_for_fds).
  std::atomic<unsigned> soon_fd_count_{0};  // fd waits in epoll_fd_ passed `soon` (wait_fd; any thread)
  SpinBudget fd_spin_;                      // owner only
  std::vector<Task*> steal_buffer_;      // steal_from's scratch (owner thread only)
  std::atomic<bool> idle_counted_{false};
  std::atomic<bool> stop_{false};
  int epoll_fd_ = -1;
  int event_fd_ = -1;                    // written to wake the worker
  std::mutex timers_mutex_;              // guards timers_ and every node's index_
  std::vector<TimerNode*> timers_;       // min-heap by deadline
  std::atomic<std::size_t> timer_count_{0};
  Clock::time_point next_timer_ = Clock::time_point::max();  // earliest deadline as of run_timers (owner only)
  std::mutex fd_mutex_;                  // guards FdWait nodes during dispatch
  std::atomic<std::size_t> fd_count_{0};
#if defined(CSP_ASAN)
  void* main_asan_fake_stack_ = nullptr;
  const void* main_stack_bottom_ = nullptr;
  std::size_t main_stack_size_ = 0;
#endif
#if defined(CSP_TSAN)
  void* main_tsan_fiber_ = nullptr;
#endif
};

struct Scheduler {
  explicit Scheduler(const Config& config);
  ~Scheduler();
  void start();
  void stop();

  /// Makes `task` runnable: on the calling worker's runnext slot if called
  /// from a worker, otherwise on the task's own worker.
  void schedule(Task* task) noexcept;
  /// Puts a new task on a worker and makes it runnable.
  void launch(Task* task) noexcept;
  /// Wakes a sleeping worker other than `busy` so it can steal (work was queued).
  void wake_idle_worker(Worker* busy, std::size_t count = 1) noexcept;

  void live_add(std::int64_t delta) noexcept {
    if (live_.fetch_add(delta, std::memory_order_acq_rel) + delta == 0) check_deadlock();
  }
  void check_deadlock() noexcept;
  void check_deadlock_locked(std::vector<Waiter*>& to_wake) noexcept;
  void registry_add(Parker* parker) noexcept;
  void registry_remove(Parker* parker) noexcept;

  Config config_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::int64_t> live_{0};
  std::atomic<unsigned> next_worker_{0};     // round-robin for launches from threads
  std::atomic<unsigned> sleeping_workers_{0};
  std::atomic<unsigned> threads_running_{0};  // thread_process threads not yet done with this scheduler
  std::mutex registry_mutex_;                // guards the registry list
  Parker* registry_head_ = nullptr;
  std::uint64_t generation_ = 0;             // distinguishes runtimes across shutdown/fork
  // The fork gate (ASan builds, see quiesce_for_fork): closed while one
  // worker forks; the other workers wait at their switch point and count
  // themselves in fork_parked_.
  std::atomic<std::uint32_t> fork_gate_{0};
  std::atomic<unsigned> fork_parked_{0};
  bool membarrier_ = false;                  // MEMBARRIER_CMD_PRIVATE_EXPEDITED is registered
};

inline constexpr std::int64_t kSource = std::int64_t{1} << 32;

__attribute__((always_inline)) inline void Worker::poll_due() noexcept {
  if (timer_count_.load(std::memory_order_relaxed) + fd_count_.load(std::memory_order_relaxed) != 0) [[unlikely]]
    poll_due_now();
}

__attribute__((always_inline)) inline void Worker::enter() noexcept {
  const std::uint64_t odd = phase_.load(std::memory_order_relaxed) + 1;
  if (asymmetric_) [[likely]] {
    phase_.store(odd, std::memory_order_relaxed);
    // Keeps the load below after the store in the compiler. The CPU may
    // still let the load pass the store; a thief's membarrier, between its
    // request and its read of phase_, rules that out.
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    phase_.exchange(odd, std::memory_order_seq_cst);  // a full barrier instead
  }
  // SYNC POINT: phase_ odd then steal_req_ (Dekker with steal_local_into,
  // which stores steal_req_ then reads phase_): either the thief sees us in
  // the scheduler and keeps off local_, or we see its request here.
  if (steal_req_.load(std::memory_order_seq_cst) != 0) [[unlikely]]
    answer_steal();
}

__attribute__((always_inline)) inline void Worker::leave() noexcept {
  // SYNC POINT: release pairs with the acquire of phase_ in steal_local_into().
  phase_.store(phase_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

/// The running scheduler, started on first use.
Scheduler& scheduler();
/// The running scheduler or null (no start).
Scheduler* scheduler_if_running() noexcept;
/// This thread's worker, or null. Never inlined: a coroutine can resume on
/// another thread, so the TLS address must be recomputed after each switch.
Worker* current_worker() noexcept;
/// The running task, or null on a thread.
Task* current_task() noexcept;
/// This thread's parker, registered with the running scheduler.
ThreadParker* thread_parker();

/// Parks the running task until unparked (consumes one unpark).
void park_task(Task* self) noexcept;
/// wait() for a coroutine: parks `self` until `w` is selected (and woken);
/// keeps `self->waiting_on_` set meanwhile.
std::uintptr_t wait_task(Task* self, Waiter& w, Deadline deadline);

/// Futex helpers on a 32-bit word (threads park on these).
void futex_wake(std::atomic<std::uint32_t>* word) noexcept;
/// Waits while *word == expected, at most until `deadline`; false on timeout.
bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) noexcept;

/// The message of the last deadlock found (for csp::Deadlock).
void set_deadlock_message(std::string message);
std::string deadlock_message();

/// True while this thread's parker exists (false during thread exit).
bool thread_parker_alive() noexcept;

}  // namespace csp::detail
