// scheduler.cpp: workers and the coroutine switch. See scheduler.hpp for the
// invariants.
#include "scheduler.hpp"

#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <csp/error.hpp>
#include <csp/trace.hpp>

#if defined(CSP_ASAN)
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom,
                                               std::size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                                std::size_t* size_old);
#endif
#if defined(CSP_TSAN)
extern "C" void* __tsan_get_current_fiber();
extern "C" void* __tsan_create_fiber(unsigned flags);
extern "C" void __tsan_destroy_fiber(void* fiber);
extern "C" void __tsan_switch_to_fiber(void* fiber, unsigned flags);
#endif

namespace csp::detail {
namespace {

thread_local Worker* t_worker = nullptr;

std::mutex g_sched_mutex;                   // guards creation and destruction of g_sched
std::atomic<Scheduler*> g_sched{nullptr};   // the running scheduler
std::uint64_t g_generation = 0;             // guarded by g_sched_mutex
Config g_config;                            // guarded by g_sched_mutex
bool g_configured = false;                  // configure() was called

Config config_from_env(Config config) {
  if (const char* w = std::getenv("CSP_WORKERS"); w && *w) config.workers = std::strtoul(w, nullptr, 10);
  if (const char* s = std::getenv("CSP_STACK_SIZE"); s && *s) config.stack_size = std::strtoull(s, nullptr, 10);
  if (const char* s = std::getenv("CSP_SPIN_US"); s && *s) config.spin_us = std::strtoul(s, nullptr, 10);
  if (config.workers == 0) {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    config.workers = n > 0 ? static_cast<unsigned>(n) : 1;
  }
  config.stack_size = std::max<std::size_t>((config.stack_size + 4095) / 4096 * 4096, 16 * 1024);
  return config;
}

[[noreturn]] void stack_overflow(Task* task) {
  std::fprintf(stderr,
               "csp: stack overflow in process '%s' (stack %zu bytes; raise csp::Config::stack_size "
               "or CSP_STACK_SIZE)\n",
               task->name_.c_str(), task->stack_.size);
  std::abort();
}

namespace bctx = boost::context::detail;

#if defined(__x86_64__) && defined(__ELF__)
// Boost.Context's jump_fcontext (1.74) on x86-64 leaves through `jmp *%r8`:
// the `call` into it pushes a return-stack-buffer entry that no `ret` pops,
// so the `ret` that ends the function calling the switch (yield, wait, ...)
// is mispredicted at every switch, about 6 ns here. This is the same switch,
// on the same context layout (make_fcontext's contexts and jump_fcontext's
// saved ones are interchangeable with ours), that leaves through `ret`: the
// return stack stays balanced, and when both sides switched from the same
// place, as processes in a loop do, every return is predicted.
extern "C" bctx::transfer_t csp_jump_fcontext(bctx::fcontext_t to, void* data) noexcept;
asm(R"(
	.pushsection .text
	.p2align 4
	.globl csp_jump_fcontext
	.hidden csp_jump_fcontext
	.type csp_jump_fcontext, @function
csp_jump_fcontext:
	leaq -0x38(%rsp), %rsp
	stmxcsr (%rsp)
	fnstcw 0x4(%rsp)
	movq %r12, 0x8(%rsp)
	movq %r13, 0x10(%rsp)
	movq %r14, 0x18(%rsp)
	movq %r15, 0x20(%rsp)
	movq %rbx, 0x28(%rsp)
	movq %rbp, 0x30(%rsp)
	movq %rsp, %rax
	movq %rdi, %rsp
	ldmxcsr (%rsp)
	fldcw 0x4(%rsp)
	movq 0x8(%rsp), %r12
	movq 0x10(%rsp), %r13
	movq 0x18(%rsp), %r14
	movq 0x20(%rsp), %r15
	movq 0x28(%rsp), %rbx
	movq 0x30(%rsp), %rbp
	leaq 0x38(%rsp), %rsp
	movq %rsi, %rdx
	movq %rax, %rdi
	ret
	.size csp_jump_fcontext, .-csp_jump_fcontext
	.popsection
)");
inline bctx::transfer_t jump(bctx::fcontext_t to, void* data) noexcept { return csp_jump_fcontext(to, data); }
#else
inline bctx::transfer_t jump(bctx::fcontext_t to, void* data) noexcept { return bctx::jump_fcontext(to, data); }
#endif

inline void after_switch(bctx::transfer_t from) noexcept;

/// The one place a worker changes stacks. `from` null means the worker loop.
__attribute__((always_inline)) inline void switch_to(Worker* w, Task* from, Task* to) noexcept {
  w->prev_ = from;
  w->prev_is_main_ = from == nullptr;
  w->current_ = to;
  if (to) to->worker_ = w;
#if defined(CSP_ASAN)
  __sanitizer_start_switch_fiber(from ? &from->asan_fake_stack_ : &w->main_asan_fake_stack_,
                                 to ? static_cast<const void*>(to->stack_.bottom) : w->main_stack_bottom_,
                                 to ? to->stack_.size : w->main_stack_size_);
#endif
#if defined(CSP_TSAN)
  __tsan_switch_to_fiber(to ? to->tsan_fiber_ : w->main_tsan_fiber_, 0);
#endif
  // A raw jump (the fiber API on top of it adds a swap and a branch per
  // switch that the hot path does not need).
  // The worker travels in the transfer: whoever resumes us runs on the
  // thread we resume on, so no thread-local lookup is needed after a switch.
  after_switch(jump(to ? to->ctx_ : w->main_ctx_, w));
}

/// Runs first on the stack just switched to: saves the continuation of the
/// context that switched away and finishes what it was doing (parking,
/// yielding, dying).
__attribute__((always_inline)) inline void after_switch(bctx::transfer_t back) noexcept {
  auto* w = static_cast<Worker*>(back.data);
  bctx::fcontext_t from = back.fctx;
#if defined(CSP_ASAN)
  {
    const void* old_bottom = nullptr;
    std::size_t old_size = 0;
    Task* cur = w->current_;
    __sanitizer_finish_switch_fiber(cur ? cur->asan_fake_stack_ : w->main_asan_fake_stack_,
                                    &old_bottom, &old_size);
    if (w->prev_is_main_ && w->main_stack_bottom_ == nullptr) {
      w->main_stack_bottom_ = old_bottom;
      w->main_stack_size_ = old_size;
    }
  }
#endif
  if (w->prev_is_main_) {
    w->main_ctx_ = from;
  } else {
    Task* prev = w->prev_;
    if (prev->switching_ == Task::Switch::park) [[likely]] {
      prev->ctx_ = from;
      // SYNC POINT: release pairs with the acquire load in unpark().
      prev->state_.store(kParked, std::memory_order_release);
    } else if (prev->switching_ == Task::Switch::yield) {
      prev->ctx_ = from;  // in local_ already: thieves look there once phase_ is even (below)
    } else {
      stack_pool().release(prev->stack_);  // dying: we are off that stack now
      delete prev;
    }
    if (!w->current_) return;  // in the loop: still in the scheduler
  }
  w->leave();  // a task runs: local_ is open to thieves
}

void run_task_body(Task* task) noexcept {
  std::exception_ptr error = task->body_->run();
  task->body_.reset();
  // A process joins the processes it spawned before it counts as finished.
  for (auto& child : task->spawned_) {
    child->latch_.wait();
    if (!child->joined_.exchange(true) && !error) error = child->latch_.first_error();
  }
  task->spawned_.clear();
  scheduler().registry_remove(task);
  if (task->latch_) task->latch_->arrive(std::move(error));
}

/// First code on a new task's stack; never returns (the stack is released
/// by whoever runs next, in after_switch).
[[noreturn]] void task_entry(bctx::transfer_t t) noexcept {
  after_switch(t);
  Task* task = static_cast<Worker*>(t.data)->current_;
  run_task_body(task);
  Worker* w = task->worker_;  // it may have moved to another worker
  w->poll_due();
  w->enter();
  Task* next = w->pick_next();
  task->switching_ = Task::Switch::die;
  if (!StackPool::intact(task->stack_)) stack_overflow(task);
  w->prev_ = task;
  w->prev_is_main_ = false;
  w->current_ = next;
#if defined(CSP_ASAN)
  __sanitizer_start_switch_fiber(nullptr,
                                 next ? static_cast<const void*>(next->stack_.bottom) : w->main_stack_bottom_,
                                 next ? next->stack_.size : w->main_stack_size_);
#endif
#if defined(CSP_TSAN)
  __tsan_switch_to_fiber(next ? next->tsan_fiber_ : w->main_tsan_fiber_, 0);
#endif
  if (next) next->worker_ = w;
  jump(next ? next->ctx_ : w->main_ctx_, w);
  __builtin_unreachable();
}

}  // namespace

// ---------------------------------------------------------------------------

Worker* current_worker() noexcept {
  Worker* w = t_worker;
  asm volatile("" ::: "memory");
  return w;
}

Task* current_task() noexcept {
  Worker* w = current_worker();
  return w ? w->current_ : nullptr;
}

Task::~Task() {
#if defined(CSP_TSAN)
  if (tsan_fiber_) __tsan_destroy_fiber(tsan_fiber_);
#endif
}

Worker::Worker(Scheduler& sched, unsigned index) : sched_(sched), index_(index) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0) throw_system_error("csp: worker epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the wake-up eventfd
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
}

Worker::~Worker() {
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::poll_due_now() noexcept {
  if ((++tick_ & 63) == 0) {
    run_timers();
    if (fd_count_.load(std::memory_order_relaxed) != 0) poll_fds(0);
  }
}

__attribute__((noinline, cold)) void Worker::answer_steal() noexcept {
  for (unsigned spins = 0;; ++spins) {
    std::uint32_t r = steal_req_.load(std::memory_order_acquire);
    if (r == 0) return;
    if (r & kStealTaking) {  // a thief takes from local_ now: a few instructions, unless it was preempted
      if (spins < 1024) __builtin_ia32_pause();
      else std::this_thread::yield();
      continue;
    }
    if (!steal_req_.compare_exchange_weak(r, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
    // The thief asked while we were in the scheduler: give it half of
    // local_ (the newest, in their order), as it would have taken.
    std::size_t n = (local_.size() + 1) / 2;
    if (n == 0) return;
    std::vector<Task*>& give = steal_buffer_;
    give.resize(n);
    for (std::size_t i = n; i-- > 0;) give[i] = local_.pop_back();
    local_size_.store(local_.size(), std::memory_order_relaxed);
    sched_.workers_[r - 1]->push_many(give.data(), n);
    return;
  }
}

void Worker::drain_queue() noexcept {
  std::lock_guard lock(queue_lock_);
  while (!queue_.empty()) local_.push_back(queue_.pop_front());
  queue_size_.store(0, std::memory_order_relaxed);
  local_size_.store(local_.size(), std::memory_order_relaxed);
}

__attribute__((always_inline)) inline Task* Worker::pick_next() noexcept {
#if defined(CSP_FORK_GATE)
  // A fork is waiting for this worker: go back to the loop, which waits.
  if (sched_.fork_gate_.load(std::memory_order_relaxed) != 0) [[unlikely]]
    return nullptr;
#endif
  Task* next = runnext_.load(std::memory_order_relaxed);
  if (next && runnext_streak_ < 64) [[likely]] {
    ++runnext_streak_;
    runnext_.store(nullptr, std::memory_order_relaxed);
    return next;
  }
  return pick_queued(next);
}

__attribute__((noinline)) Task* Worker::pick_queued(Task* next) noexcept {
  runnext_streak_ = 0;
  if (!local_.empty()) {  // queued before anything in queue_
    Task* t = local_.pop_front();
    local_size_.store(local_.size(), std::memory_order_relaxed);
    dequeues_.store(dequeues_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return t;
  }
  if (queue_size_.load(std::memory_order_relaxed) != 0) {
    std::lock_guard lock(queue_lock_);
    if (!queue_.empty()) {
      Task* t = queue_.pop_front();
      queue_size_.store(queue_.size(), std::memory_order_relaxed);
      dequeues_.store(dequeues_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return t;
    }
  }
  if (next) {
    runnext_.store(nullptr, std::memory_order_relaxed);
    return next;
  }
  return nullptr;
}

__attribute__((noinline)) void Worker::push(Task* task) noexcept { push_many(&task, 1); }

__attribute__((noinline)) void Worker::queue_local(Task* task) noexcept {
  // A running task enters the scheduler for a moment (local_ is this
  // thread's while phase_ is odd); the loop (current_ null) is in it already.
  const bool from_task = current_ != nullptr;
  if (from_task) enter();
  // What others queued meanwhile goes ahead (everything in local_ was
  // queued before everything in queue_).
  if (queue_size_.load(std::memory_order_relaxed) != 0) [[unlikely]]
    drain_queue();
  local_.push_back(task);
  local_size_.store(local_.size(), std::memory_order_relaxed);
  if (from_task) leave();
}

void Worker::push_many(Task* const* tasks, std::size_t n) noexcept {
  std::size_t size;
  const bool foreign = t_worker != this;  // no switch here: a plain TLS read is safe
  {
    std::lock_guard lock(queue_lock_);
    for (std::size_t i = 0; i < n; ++i) queue_.push_back(tasks[i]);
    size = queue_.size();
    // SYNC POINT (foreign pushes): seq_cst store, then notify()'s seq_cst
    // load of sleeping_; the owner stores sleeping_ then loads queue_size_
    // (Dekker). A relaxed store here could still sit in this CPU's store
    // buffer when both loads run, and the owner would sleep on our task.
    queue_size_.store(size, foreign ? std::memory_order_seq_cst : std::memory_order_relaxed);
  }
  if (foreign) {
    make_busy();
    // From a thread (main, a thread_process) or another worker: if the
    // owner is busy, the task may wait behind a process that never parks;
    // wake an idle worker, which steals it if the owner makes no progress.
    if (!notify() && size == n && !spinning_.load(std::memory_order_relaxed)) sched_.wake_idle_worker(this, 1);
  }
  if (size >= 2) sched_.wake_idle_worker(this, size - 1);  // a backlog: let sleeping workers come and steal
}

std::size_t Worker::steal_into(std::vector<Task*>& out) noexcept {
  if (queue_size_.load(std::memory_order_relaxed) == 0 || !queue_lock_.try_lock()) return 0;
  std::size_t n = (queue_.size() + 1) / 2;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(queue_.pop_back());
  }
  queue_size_.store(queue_.size(), std::memory_order_relaxed);
  queue_lock_.unlock();
  return n;
}

std::size_t Worker::steal_local_into(std::vector<Task*>& out, unsigned thief) noexcept {
  if (local_size_.load(std::memory_order_relaxed) == 0) return 0;
  const std::uint32_t me = thief + 1;
  // Ask (or take over another thief's unanswered request, so a thief that
  // went elsewhere blocks nobody): the owner gives us half of local_ at its
  // next switch unless we can take it ourselves below.
  std::uint32_t r = steal_req_.load(std::memory_order_relaxed);
  if ((r & kStealTaking) || !steal_req_.compare_exchange_strong(r, me, std::memory_order_seq_cst, std::memory_order_relaxed))
    return 0;
  // SYNC POINT: steal_req_ then phase_ (Dekker with Worker::enter, which
  // stores phase_ then reads steal_req_ with only a compiler barrier:
  // membarrier runs a full barrier on every thread of the process).
  if (asymmetric_ && ::syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) return 0;
  // SYNC POINT: acquire pairs with the release in Worker::leave(): the
  // owner's last changes to local_ are visible.
  if (phase_.load(std::memory_order_seq_cst) & 1) return 0;  // at a switch: it answers at the next one
  std::uint32_t asked = me;
  if (!steal_req_.compare_exchange_strong(asked, me | kStealTaking, std::memory_order_acquire,
                                          std::memory_order_relaxed))
    return 0;  // the owner answered meanwhile (the tasks are on their way to our queue)
  std::size_t n = (local_.size() + 1) / 2;
  for (std::size_t i = 0; i < n; ++i) out.push_back(local_.pop_back());
  local_size_.store(local_.size(), std::memory_order_relaxed);
  // SYNC POINT: release pairs with the acquire loads of steal_req_ in
  // Worker::enter and answer_steal: the owner sees local_ as we left it.
  steal_req_.store(0, std::memory_order_release);
  return n;
}

bool Worker::notify() noexcept {
  // SYNC POINT: seq_cst pairs with the store of sleeping_ in run() (Dekker:
  // the worker sets sleeping_ then re-checks its queue; we queue then read sleeping_).
  // Whoever turns sleeping_ back to false owns the wake-up: two wakers never
  // count the same sleeper (wake_idle_worker would then leave another asleep).
  if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_acq_rel)) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(event_fd_, &one, sizeof one);
    return true;
  }
  return false;
}

void Worker::make_busy() noexcept {
  if (!idle_counted_.load(std::memory_order_acquire)) return;
  // Counted in before the flag turns (see the invariant on live_ in
  // scheduler.hpp); a caller that loses the exchange takes its count back.
  sched_.live_.fetch_add(1, std::memory_order_acq_rel);
  if (!idle_counted_.exchange(false, std::memory_order_acq_rel)) sched_.live_add(-1);
}

void Worker::add_timer(TimerNode* node) {
  std::lock_guard lock(timers_mutex_);
  timers_.push_back(node);
  std::size_t i = timers_.size() - 1;
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!(timers_[i]->deadline_ < timers_[parent]->deadline_)) break;
    std::swap(timers_[i], timers_[parent]);
    timers_[i]->index_ = i;
    i = parent;
  }
  timers_[i]->index_ = i;
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
  if (current_worker() != this) notify();
}

namespace {
void heap_remove_at(std::vector<TimerNode*>& heap, std::size_t i) noexcept {
  heap[i]->index_ = static_cast<std::size_t>(-1);
  TimerNode* last = heap.back();
  heap.pop_back();
  if (i == heap.size()) return;
  heap[i] = last;
  last->index_ = i;
  // sift up
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!(heap[i]->deadline_ < heap[parent]->deadline_)) break;
    std::swap(heap[i], heap[parent]);
    heap[i]->index_ = i;
    heap[parent]->index_ = parent;
    i = parent;
  }
  // sift down
  for (;;) {
    std::size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap.size() && heap[l]->deadline_ < heap[m]->deadline_) m = l;
    if (r < heap.size() && heap[r]->deadline_ < heap[m]->deadline_) m = r;
    if (m == i) break;
    std::swap(heap[i], heap[m]);
    heap[i]->index_ = i;
    heap[m]->index_ = m;
    i = m;
  }
}
}  // namespace

bool Worker::remove_timer(TimerNode* node) noexcept {
  std::lock_guard lock(timers_mutex_);
  if (node->index_ == static_cast<std::size_t>(-1)) return false;
  heap_remove_at(timers_, node->index_);
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
  return true;
}

int Worker::run_timers() noexcept {
  if (timer_count_.load(std::memory_order_relaxed) == 0) {
    next_timer_ = Clock::time_point::max();
    return -1;
  }
  auto now = Clock::now();
  std::unique_lock lock(timers_mutex_);
  while (!timers_.empty() && timers_.front()->deadline_ <= now) {
    TimerNode* node = timers_.front();
    heap_remove_at(timers_, 0);
    // Fired under the lock so the waiter, which removes its node under the
    // same lock after waking, cannot leave before we are done with it.
    if (node->waiter_->try_select(kTimedOut)) node->waiter_->wake();
    sched_.live_.fetch_sub(kSource, std::memory_order_acq_rel);
  }
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
  next_timer_ = timers_.empty() ? Clock::time_point::max() : timers_.front()->deadline_;
  if (timers_.empty()) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(timers_.front()->deadline_ - now).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, 1000 * 60));
}

void Worker::poll_fds(int timeout_ms) noexcept {
  epoll_event events[64];
  int n = ::epoll_wait(epoll_fd_, events, 64, timeout_ms);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == nullptr) {
      std::uint64_t value;
      [[maybe_unused]] auto r = ::read(event_fd_, &value, sizeof value);
      continue;
    }
    std::lock_guard lock(fd_mutex_);
    auto* node = static_cast<FdWait*>(events[i].data.ptr);
    node->fired_ = true;
    if (node->waiter_->try_select(kWoken)) node->waiter_->wake();
  }
}

#if defined(CSP_FORK_GATE)
namespace {
/// A worker (or a second forker) waits here, holding no lock, while another
/// worker forks.
void wait_at_fork_gate(Scheduler& s) noexcept {
  s.fork_parked_.fetch_add(1, std::memory_order_acq_rel);
  while (s.fork_gate_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  s.fork_parked_.fetch_sub(1, std::memory_order_acq_rel);
}
}  // namespace
#endif

void Worker::run() {
  t_worker = this;
#if defined(CSP_TSAN)
  main_tsan_fiber_ = __tsan_get_current_fiber();
#endif
  const auto spin = std::chrono::microseconds(sched_.config_.spin_us);
  fd_spin_.max_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(spin).count();
  // Steal only from a worker whose queue made no progress for a while: a
  // queue that its owner drains quickly belongs to processes that talk to
  // each other, and moving one of them to another core would turn every
  // hand-off into a cross-core wake-up.
  const auto patience = std::chrono::microseconds(5);
  std::vector<std::uint64_t> seen(sched_.workers_.size());
  // Each victim's dequeue count when this worker last looked; after a sleep
  // the look is at least a nap old, so the first look may steal at once.
  bool slept = false;
  const auto look = [&] {
    Task* stolen = nullptr;
    for (std::size_t k = 1; k < seen.size() && !stolen; ++k) {
      std::size_t v = (index_ + k) % seen.size();
      Worker& victim = *sched_.workers_[v];
      std::uint64_t d = victim.dequeues_.load(std::memory_order_relaxed);
      if (victim.has_queued() && d == seen[v]) stolen = steal_from(victim);
      seen[v] = d;
    }
    return stolen;
  };
  while (!stop_.load(std::memory_order_acquire)) {
    // The loop counts as in the scheduler (phase_ odd): answer a request
    // made while we ran tasks.
    if (steal_req_.load(std::memory_order_acquire) != 0) [[unlikely]]
      answer_steal();
#if defined(CSP_FORK_GATE)
    if (sched_.fork_gate_.load(std::memory_order_acquire) != 0) [[unlikely]] {
      wait_at_fork_gate(sched_);
      continue;
    }
#endif
    if (Task* next = pick_next()) {
      switch_to(this, nullptr, next);
      continue;
    }
    // Nothing to do: fire timers, poll fds, spin a little, then sleep.
    run_timers();
    if (fd_count_.load(std::memory_order_relaxed) != 0) poll_fds(0);
    if (runnext_.load(std::memory_order_relaxed) || has_queued()) continue;
    Task* stolen = nullptr;
    bool found = false;
    auto now = Clock::now();
    // No spin for work while any worker waits for fds: the wake-up comes
    // from another OS process, which needs the CPU a spin would take (and
    // an fd's readiness shows only in its worker's epoll_wait anyway). A
    // worker whose tasks wait for a quick answer on a pipe or socket polls
    // its fds for a while instead, yielding its CPU between polls.
    bool fd_waits = false;
    for (auto& w : sched_.workers_) fd_waits = fd_waits || w->fd_count_.load(std::memory_order_relaxed) != 0;
    // A spin ends when a timer is due (run_timers just set next_timer_) or
    // when one is added or removed (another thread's, which may be due sooner).
    const std::size_t timers_seen = timer_count_.load(std::memory_order_relaxed);
    if (soon_fd_count_.load(std::memory_order_relaxed) != 0 && spin.count() != 0 && spin_for_fds(now, timers_seen))
      continue;
    const auto until = std::min(fd_waits ? now : now + spin, next_timer_);
    auto next_look = now + patience;
    spinning_.store(true, std::memory_order_relaxed);
    if (slept) {
      stolen = look();
      found = stolen != nullptr;
    } else {
      for (std::size_t v = 0; v < seen.size(); ++v) seen[v] = sched_.workers_[v]->dequeues_.load(std::memory_order_relaxed);
    }
    slept = false;
    while (now < until && !found) {
      for (int i = 0; i < 32; ++i) __builtin_ia32_pause();
      if (spin_should_end(timers_seen)) {
        found = true;
        break;
      }
      now = Clock::now();
      if (now < next_look) continue;
      next_look = now + patience;
      stolen = look();
      found = stolen != nullptr;
    }
    spinning_.store(false, std::memory_order_relaxed);
    if (stolen) {
      switch_to(this, nullptr, stolen);
      continue;
    }
    if (found) continue;
    // SYNC POINT: sleeping_ and an increment of sleeping_workers_, then
    // loads of the queues. A worker that queues a backlog then reads
    // sleeping_workers_ by a read-modify-write (wake_idle_worker): either it
    // sees us and wakes us, or we see its backlog below and only nap.
    sleeping_.store(true, std::memory_order_seq_cst);
    sched_.sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
    if (queue_size_.load(std::memory_order_seq_cst) != 0 || stop_.load() || sched_.fork_gate_.load()) {
      sched_.sleeping_workers_.fetch_sub(1);
      sleeping_.store(false, std::memory_order_relaxed);
      continue;
    }
    int timeout = run_timers();
    // Work queued elsewhere that we did not steal yet (its owner made
    // progress while we looked, or this thread was descheduled): nap, not sleep.
    // While another worker runs, sleep at most kBusyNapMs: a process queued
    // behind a process that never parks wakes nobody (one queued task is
    // left to its own worker), and the look after the nap steals it.
    constexpr int kBusyNapMs = 2;
    for (auto& other : sched_.workers_) {
      if (other.get() == this) continue;
      if (other->queue_size_.load(std::memory_order_seq_cst) != 0 ||
          other->local_size_.load(std::memory_order_relaxed) != 0) {
        timeout = timeout < 0 ? 1 : std::min(timeout, 1);
        break;
      }
      if (!other->sleeping_.load(std::memory_order_relaxed)) timeout = timeout < 0 ? kBusyNapMs : std::min(timeout, kBusyNapMs);
    }
    idle_counted_.store(true, std::memory_order_release);
    sched_.live_add(-1);  // may find a deadlock and wake its victims onto this worker
    if (runnext_.load(std::memory_order_relaxed) == nullptr && queue_size_.load(std::memory_order_seq_cst) == 0)
      poll_fds(timeout);
    slept = true;
    sched_.sleeping_workers_.fetch_sub(1);
    sleeping_.store(false, std::memory_order_relaxed);
    make_busy();
  }
}

bool Worker::spin_should_end(std::size_t timers_seen) const noexcept {
  return queue_size_.load(std::memory_order_relaxed) || runnext_.load(std::memory_order_relaxed) ||
         timer_count_.load(std::memory_order_relaxed) != timers_seen || stop_.load(std::memory_order_relaxed) ||
         sched_.fork_gate_.load(std::memory_order_relaxed);
}

bool Worker::spin_for_fds(Clock::time_point now, std::size_t timers_seen) noexcept {
  if (cpus_contended(now)) return false;
  const auto start = now;
  const auto until = std::min(start + std::chrono::nanoseconds(fd_spin_.next_limit_ns()), next_timer_);
  if (until <= now) return false;  // a timer is due: it goes first, and says nothing about the fds
  bool found = false;
  while (now < until) {
    const auto before = now;
    ::sched_yield();
    poll_fds(0);
    if (spin_should_end(timers_seen)) {
      found = true;
      break;
    }
    now = Clock::now();
    if (now - before > std::chrono::nanoseconds(kDescheduledNs)) {  // lost the CPU: no spin for a while
      note_cpus_contended(now);
      fd_spin_.learn(std::numeric_limits<std::int64_t>::max());
      return false;
    }
  }
  const auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
  fd_spin_.learn(found ? waited : std::numeric_limits<std::int64_t>::max());
  return found;
}

Task* Worker::steal_from(Worker& victim) noexcept {
  std::vector<Task*>& stolen = steal_buffer_;  // reused: a steal allocates only while it grows
  stolen.clear();
  // queue_ first: cheaper, and its tasks were queued after local_'s.
  if (victim.steal_into(stolen) == 0 && victim.steal_local_into(stolen, index_) == 0) return nullptr;
  Task* next = stolen.back();
  stolen.pop_back();
  if (!stolen.empty()) {
    std::lock_guard lock(queue_lock_);
    for (Task* t : stolen) queue_.push_back(t);
    queue_size_.store(queue_.size(), std::memory_order_relaxed);
  }
  // Work is left over somewhere: pass the wake-up on to another sleeper.
  for (auto& w : sched_.workers_) {
    if (w->has_queued()) {
      sched_.wake_idle_worker(this);
      break;
    }
  }
  return next;
}

// ---------------------------------------------------------------------------

Scheduler::Scheduler(const Config& config) : config_(config) {
  for (unsigned i = 0; i < config_.workers; ++i) workers_.push_back(std::make_unique<Worker>(*this, i));
}

Scheduler::~Scheduler() = default;

void Scheduler::start() {
  // Lets yield() queue on its own worker without a read-modify-write (see
  // Worker::enter); without membarrier, enter() fences instead.
  membarrier_ = ::syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  for (auto& w : workers_) w->asymmetric_ = membarrier_;
  for (auto& w : workers_) {
    w->idle_counted_.store(false);
    live_.fetch_add(1);
    w->start();
  }
}

void Scheduler::stop() {
  for (auto& w : workers_) {
    w->stop_.store(true);
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(w->event_fd_, &one, sizeof one);
  }
  for (auto& w : workers_)
    if (w->thread_.joinable()) w->thread_.join();
}

void Scheduler::schedule(Task* task) noexcept {
  Worker* w = current_worker();
  if (w && &w->sched_ == this) {
    w->run_next(task);
    return;
  }
  task->worker_->push(task);
}

void Scheduler::launch(Task* task) noexcept {
  Worker* w = current_worker();
  if (!w || &w->sched_ != this) {
    // A thread puts all it starts on one worker (processes started together
    // usually talk to each other); idle workers steal a backlog.
    thread_local std::uint64_t generation = 0;
    thread_local unsigned chosen = 0;
    if (generation != generation_) {
      generation = generation_;
      chosen = next_worker_.fetch_add(1);
    }
    w = workers_[chosen % workers_.size()].get();
  }
  task->worker_ = w;
  w->push(task);
}

void Scheduler::wake_idle_worker(Worker* busy, std::size_t count) noexcept {
  // SYNC POINT: a read-modify-write, not a load: it is ordered after the
  // caller's queue store and against a sleeper's increment in run(), so
  // either we see the sleeper or the sleeper sees our backlog.
  if (sleeping_workers_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
  for (auto& w : workers_) {
    if (count == 0) return;
    if (w.get() != busy && w->notify()) --count;
  }
}

void Scheduler::registry_add(Parker* parker) noexcept {
  std::lock_guard lock(registry_mutex_);
  parker->reg_prev_ = nullptr;
  parker->reg_next_ = registry_head_;
  if (registry_head_) registry_head_->reg_prev_ = parker;
  registry_head_ = parker;
}

void Scheduler::registry_remove(Parker* parker) noexcept {
  std::lock_guard lock(registry_mutex_);
  if (parker->reg_prev_) parker->reg_prev_->reg_next_ = parker->reg_next_;
  else if (registry_head_ == parker) registry_head_ = parker->reg_next_;
  if (parker->reg_next_) parker->reg_next_->reg_prev_ = parker->reg_prev_;
  parker->reg_prev_ = parker->reg_next_ = nullptr;
}

void Scheduler::check_deadlock() noexcept {
  // Waiters are selected under the registry lock (a selected waiter's owner
  // cannot leave wait() before its wake, so it stays alive) and woken after
  // it: unpark() may wait for a task still switching out on a worker whose
  // next task needs the registry lock to finish.
  std::vector<Waiter*> to_wake;
  check_deadlock_locked(to_wake);
  for (Waiter* w : to_wake) w->wake();
}

void Scheduler::check_deadlock_locked(std::vector<Waiter*>& to_wake) noexcept {
  std::lock_guard lock(registry_mutex_);
  if (live_.load(std::memory_order_acquire) != 0) return;
  for (auto& w : workers_) {
    if (w->runnext_.load(std::memory_order_relaxed) || w->queue_size_.load(std::memory_order_acquire) ||
        w->local_size_.load(std::memory_order_acquire))
      return;
  }
  std::ostringstream report;
  std::vector<Waiter*> to_break;
  std::size_t blocked = 0;
  for (Parker* p = registry_head_; p; p = p->reg_next_) {
    Waiter* w = p->waiting_on_.load(std::memory_order_acquire);
    if (!w) continue;
    // Selected but not yet woken (an earlier check, or any waker, is about
    // to wake it): a wake-up is on its way, so this is no deadlock.
    if (w->token() != kWaiting) return;
    ++blocked;
    report << "\n  " << (p->kind_ == Parker::Kind::task ? "process '" : "thread '") << p->name_
           << "' blocked in " << w->what_;
    if (!w->object_.empty()) report << " on '" << w->object_ << "'";
    if (w->deadlockable_) to_break.push_back(w);
  }
  // A thread that registered meanwhile (it waits on registry_mutex_ after
  // counting itself live) may still talk to the blocked processes.
  if (to_break.empty() || live_.load(std::memory_order_acquire) != 0) return;
  std::string message = "csp: deadlock: all " + std::to_string(blocked) +
                        " processes are blocked and nothing can wake them:" + report.str();
  set_deadlock_message(message);
  for (Waiter* w : to_break) {
    if (SpinLock* guard = w->guard_) {
      // Selected only under its channel's lock. That lock may be held by a
      // thread not counted in live_ (one that never blocked): it lets go
      // soon, unless it waits for registry_mutex_ to register itself, which
      // it does only after making live_ non-zero: then this is no deadlock.
      while (!guard->try_lock()) {
        if (live_.load(std::memory_order_acquire) != 0) return;  // to_wake holds the ones selected so far
        __builtin_ia32_pause();
      }
      bool won = w->select_locked(kDeadlock);
      guard->unlock();
      if (won) to_wake.push_back(w);
    } else if (w->try_select(kDeadlock)) {
      to_wake.push_back(w);
    }
  }
}

// ---------------------------------------------------------------------------

Scheduler* scheduler_if_running() noexcept { return g_sched.load(std::memory_order_acquire); }

Scheduler& scheduler() {
  if (Scheduler* s = g_sched.load(std::memory_order_acquire)) return *s;
  std::lock_guard lock(g_sched_mutex);
  if (Scheduler* s = g_sched.load(std::memory_order_relaxed)) return *s;
  if (!g_configured) g_config = config_from_env(Config{});
  auto* s = new Scheduler(g_config);
  s->generation_ = ++g_generation;
  s->start();
  g_sched.store(s, std::memory_order_release);
  static bool exit_hook = (std::atexit([] { csp::shutdown(); }), true);
  (void)exit_hook;
  return *s;
}

namespace {
thread_local bool t_parker_alive = false;
}

bool thread_parker_alive() noexcept { return t_parker_alive; }

ThreadParker* thread_parker() {
  thread_local struct Holder {
    ThreadParker parker;
    Holder() { t_parker_alive = true; }
    ~Holder() {
      // A thread (main too, at exit) joins what it spawned before it goes.
      for (auto& child : parker.spawned_) child->latch_.wait();
      parker.spawned_.clear();
      t_parker_alive = false;
      Scheduler* s = g_sched.load(std::memory_order_acquire);
      if (s && parker.registered_with_ == s) {
        s->registry_remove(&parker);
        s->live_add(-1);
      }
    }
  } holder;
  Scheduler& s = scheduler();
  if (holder.parker.registered_with_ != &s) {
    holder.parker.registered_with_ = &s;
    holder.parker.state_.store(0);
    if (holder.parker.name_.empty()) holder.parker.name_ = ::gettid() == ::getpid() ? "main" : "thread";
    s.live_.fetch_add(1, std::memory_order_acq_rel);
    s.registry_add(&holder.parker);
  }
  return &holder.parker;
}

namespace {
/// The rare part of park_task(): fires due timers and ready fds (true if
/// that selected the caller's own waiter: then it does not park), and
/// checks the stack's canary.
__attribute__((noinline)) bool park_checks(Task* self) noexcept {
  Worker* w = self->worker_;
  if (w->timer_count_.load(std::memory_order_relaxed) + w->fd_count_.load(std::memory_order_relaxed) != 0) {
    w->poll_due();  // may fire our own timer: then we are self-notified
    if (self->self_notified_) {
      self->self_notified_ = false;
      return true;
    }
  }
  if (!StackPool::intact(self->stack_)) stack_overflow(self);
  return false;
}
}  // namespace

__attribute__((always_inline)) inline void park_task(Task* self) noexcept {
  Worker* w = self->worker_;  // set whenever a worker switches to the task
  if (w->timer_count_.load(std::memory_order_relaxed) + w->fd_count_.load(std::memory_order_relaxed) != 0 ||
      !StackPool::intact(self->stack_)) [[unlikely]] {
    if (park_checks(self)) return;
  }
  self->switching_ = Task::Switch::park;
  w->enter();
  switch_to(w, self, w->pick_next());
}

namespace {
__attribute__((noinline)) void unpark_thread(ThreadParker* tp) noexcept {
  if (tp->registered_with_) tp->registered_with_->live_.fetch_add(1, std::memory_order_acq_rel);
  // SYNC POINT with the acquire load / exchange in wait_thread(): a thread
  // still spinning (0) sees the 1 without a syscall; one asleep (2) is woken.
  if (tp->state_.exchange(1, std::memory_order_acq_rel) == 2) futex_wake(&tp->state_);
}

/// The end of unpark() for a task whose continuation is saved: marks it
/// running and schedules it.
__attribute__((always_inline)) inline void schedule_unparked(Task* task, Worker* here) noexcept {
  task->state_.store(kRunning, std::memory_order_relaxed);
  // Woken by a task of the worker it last ran on (the usual hand-off, and
  // the only case on one worker): schedule() without looking up the
  // worker again.
  if (task->worker_ == here) [[likely]] {
    here->run_next(task);
    return;
  }
  task->worker_->sched_.schedule(task);
}

/// The task may still be switching out on another thread: waits until its
/// continuation is saved (a few instructions, unless that thread was
/// preempted), then schedules it. Reached by a tail call, so unpark()
/// itself needs no stack frame.
__attribute__((noinline, cold)) void wait_until_parked_then_schedule(Task* task, Worker* here) noexcept {
  // SYNC POINT: as in unpark(), acquire pairs with the release store of
  // kParked in after_switch().
  for (unsigned spins = 0; task->state_.load(std::memory_order_acquire) != kParked; ++spins) {
    if (spins < 1024) __builtin_ia32_pause();
    else std::this_thread::yield();
  }
  schedule_unparked(task, here);
}
}  // namespace

void unpark(Parker* parker) noexcept {
  if (parker->kind_ == Parker::Kind::thread) [[unlikely]] {
    unpark_thread(static_cast<ThreadParker*>(parker));
    return;
  }
  auto* task = static_cast<Task*>(parker);
  Worker* here = t_worker;  // no switch in this function: a plain TLS read is safe
  if (here && here->current_ == task) [[unlikely]] {  // we won our own waiter while parking
    task->self_notified_ = true;
    return;
  }
  // SYNC POINT: acquire pairs with the release store of kParked in
  // after_switch(): the task's continuation (ctx_) is saved.
  if (task->state_.load(std::memory_order_acquire) != kParked) [[unlikely]]
    return wait_until_parked_then_schedule(task, here);
  schedule_unparked(task, here);
}

namespace {
/// wait_task() for a timed wait: a timer may select the waiter first.
__attribute__((noinline)) std::uintptr_t wait_task_timed(Task* self, Waiter& w, Deadline deadline) {
  if (deadline <= Clock::now()) {
    if (w.try_select(kTimedOut)) return kTimedOut;  // nobody else will wake us
    park_task(self);                                 // the winner's wake is on its way
    return w.token();
  }
  TimerNode node;
  node.deadline_ = deadline;
  node.waiter_ = &w;
  Worker* home = current_worker();
  scheduler().live_.fetch_add(kSource, std::memory_order_acq_rel);
  home->add_timer(&node);
  park_task(self);
  // The timer may have fired on `home` while we were woken elsewhere; taking
  // its lock in remove_timer() also waits for a firing in progress.
  if (home->remove_timer(&node)) scheduler().live_add(-kSource);
  return w.token();
}
}  // namespace

std::uintptr_t wait_task(Task* self, Waiter& w, Deadline deadline) {
  self->waiting_on_.store(&w, std::memory_order_release);
  std::uintptr_t token;
  if (deadline == forever) [[likely]] {
    park_task(self);
    token = w.token();
  } else {
    token = wait_task_timed(self, w, deadline);
  }
  self->waiting_on_.store(nullptr, std::memory_order_relaxed);
  return token;
}

Parker* current_parker() noexcept {
  if (Task* t = current_task()) return t;
  return thread_parker();
}

bool in_coroutine() noexcept { return current_task() != nullptr; }

void add_wake_source() noexcept { scheduler().live_.fetch_add(kSource, std::memory_order_acq_rel); }
void remove_wake_source() noexcept { scheduler().live_add(-kSource); }

void start(std::unique_ptr<ProcessBody> body, Latch* latch, Placement placement) {
  Scheduler& s = scheduler();
  // A thread that starts processes counts as running from now on: until it
  // blocks in csp it may still talk to them, so they are not deadlocked.
  if (!current_task()) thread_parker();
  if (placement == Placement::thread) {
    std::string name = body->name_;
    s.live_.fetch_add(1, std::memory_order_acq_rel);  // counted from now: it will run
    s.threads_running_.fetch_add(1, std::memory_order_relaxed);
    std::thread([&s, body = std::move(body), latch]() mutable {
      ThreadParker* self = thread_parker();
      s.live_.fetch_sub(1, std::memory_order_acq_rel);  // thread_parker() counted us again
      self->name_ = body->name_;
      std::exception_ptr error = body->run();
      body.reset();
      for (auto& child : self->spawned_) {
        child->latch_.wait();
        if (!child->joined_.exchange(true) && !error) error = child->latch_.first_error();
      }
      self->spawned_.clear();
      if (latch) latch->arrive(std::move(error));
      // The joiner may now shut the runtime down: shutdown() waits for
      // threads_running_ to drop, so `s` stays valid until our last touch.
      self->registered_with_ = nullptr;  // this thread's exit leaves `s` alone
      s.registry_remove(self);
      s.live_add(-1);
      s.threads_running_.fetch_sub(1, std::memory_order_release);
    }).detach();
    return;
  }
  auto* task = new Task;
  task->name_ = body->name_;
  task->body_ = std::move(body);
  task->latch_ = latch;
#if defined(CSP_TSAN)
  task->tsan_fiber_ = __tsan_create_fiber(0);
#endif
  task->stack_ = stack_pool().acquire(s.config_.stack_size);
  task->ctx_ = bctx::make_fcontext(task->stack_.top(), task->stack_.size - kCanaryBytes, &task_entry);
  s.registry_add(task);
  s.launch(task);
}

// ---------------------------------------------------------------------------

}  // namespace csp::detail

namespace csp {

void configure(const Config& config) {
  std::lock_guard lock(detail::g_sched_mutex);
  Config wanted = detail::config_from_env(config);
  if (detail::g_sched.load() != nullptr) {
    const Config& c = detail::g_sched.load()->config_;
    if (c.workers == wanted.workers && c.stack_size == wanted.stack_size && c.spin_us == wanted.spin_us) return;
    throw Error("csp::configure: the runtime is already running; call configure() before the first process "
                "or after csp::shutdown()");
  }
  detail::g_config = wanted;
  detail::g_configured = true;
}

Config configuration() {
  if (auto* s = detail::scheduler_if_running()) return s->config_;
  std::lock_guard lock(detail::g_sched_mutex);
  return detail::g_configured ? detail::g_config : detail::config_from_env(Config{});
}

void shutdown() {
  if (detail::current_worker()) throw Error("csp::shutdown: called from inside a process");
  detail::Scheduler* s = detail::scheduler_if_running();
  if (!s) {
    trace_flush();  // CSP_TRACE (csp/trace.hpp): an os_process child's events go to its parent now
    return;
  }
  // Join what this thread spawned, then stop the workers.
  if (detail::thread_parker_alive()) {
    detail::ThreadParker* self = detail::thread_parker();
    auto spawned = std::move(self->spawned_);
    for (auto& child : spawned) child->latch_.wait();
    if (self->registered_with_ == s) {
      s->registry_remove(self);
      self->registered_with_ = nullptr;
    }
  }
  // thread_process threads touch the scheduler until just before they exit.
  while (s->threads_running_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  std::lock_guard lock(detail::g_sched_mutex);
  s->stop();
  detail::g_sched.store(nullptr);
  delete s;
  trace_flush();  // CSP_TRACE (csp/trace.hpp): every process has finished
}

int this_worker() noexcept {
  detail::Worker* w = detail::current_worker();
  return w && w->current_ ? static_cast<int>(w->index_) : -1;
}

unsigned worker_count() { return static_cast<unsigned>(detail::scheduler().workers_.size()); }

const char* this_process_name() noexcept {
  if (detail::Task* t = detail::current_task()) return t->name_.c_str();
  return "main";
}

void yield() {
  detail::Worker* w = detail::current_worker();
  detail::Task* self = w ? w->current_ : nullptr;  // its worker_ is w
  if (!self) {
    std::this_thread::yield();
    return;
  }
  w->poll_due();
  // No lock and no read-modify-write: the next task and our place at the
  // back come from local_, which only this thread touches while in the
  // scheduler (see Worker::enter).
  w->enter();
  // What others queued meanwhile goes ahead of us (FIFO).
  if (w->queue_size_.load(std::memory_order_relaxed) != 0) [[unlikely]]
    w->drain_queue();
  detail::Task* next = w->runnext_.load(std::memory_order_relaxed);
  if (next) {
    w->runnext_.store(nullptr, std::memory_order_relaxed);
    w->local_.push_back(self);
    w->local_size_.store(w->local_.size(), std::memory_order_relaxed);
  } else if (w->local_.empty()) {
    w->leave();
    return;  // nobody else is ready
  } else {
    next = w->local_.pop_front();
    w->local_.push_back(self);  // the size stays
    w->dequeues_.store(w->dequeues_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  self->switching_ = detail::Task::Switch::yield;
  detail::switch_to(w, self, next);
}

namespace detail {
void quiesce_for_fork() noexcept {
#if defined(CSP_FORK_GATE)
  Scheduler* s = scheduler_if_running();
  if (!s) return;
  Worker* self = current_worker();
  std::uint32_t open = 0;
  while (!s->fork_gate_.compare_exchange_weak(open, 1, std::memory_order_acq_rel)) {
    open = 0;
    wait_at_fork_gate(*s);  // another worker forks first
  }
  for (auto& w : s->workers_)
    if (w.get() != self) w->notify();
  const unsigned others = static_cast<unsigned>(s->workers_.size()) - (self ? 1 : 0);
  const auto give_up = Clock::now() + std::chrono::seconds(1);  // a worker stuck in a long task
  while (s->fork_parked_.load(std::memory_order_acquire) < others && Clock::now() < give_up)
    std::this_thread::yield();
#endif
}

void resume_after_fork() noexcept {
#if defined(CSP_FORK_GATE)
  if (Scheduler* s = scheduler_if_running()) s->fork_gate_.store(0, std::memory_order_release);
#endif
}

void reset_after_fork() noexcept {
  t_worker = nullptr;
  new (&g_sched_mutex) std::mutex;
  g_sched.store(nullptr);  // the parent's workers do not exist here; leaked on purpose
  stack_pool().reset_after_fork();
}
}  // namespace detail

}  // namespace csp
