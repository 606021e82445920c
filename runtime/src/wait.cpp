// wait.cpp: wait(), latches, spawn and the blocking calls of csp/runtime.hpp,
// all on the one mechanism of csp/detail/wait.hpp.
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>

#include <csp/detail/spin_lock.hpp>
#include <csp/error.hpp>
#include <csp/runtime.hpp>

#include "scheduler.hpp"
#include "trace_hooks.hpp"

namespace csp::detail {
namespace {
std::mutex g_deadlock_mutex;      // guards g_deadlock_message
std::string g_deadlock_message;   // the last report
}  // namespace

void set_deadlock_message(std::string message) {
  std::lock_guard lock(g_deadlock_mutex);
  g_deadlock_message = std::move(message);
}

std::string deadlock_message() {
  std::lock_guard lock(g_deadlock_mutex);
  return g_deadlock_message;
}

void futex_wake(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) noexcept {
  if (deadline == forever) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
    return true;
  }
  auto now = Clock::now();
  if (deadline <= now) return false;  // also keeps deadline - now from overflowing
  auto left = deadline - now;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
  return !(r == -1 && errno == ETIMEDOUT);
}

namespace {

// A thread spins up to kThreadSpinNs (none when Config::spin_us, i.e.
// CSP_SPIN_US, is 0) for its notification before it sleeps: waking a
// sleeping thread costs its notifier a futex syscall and the sleeper 20-50
// us on the 2-vCPU VM, while a peer on another CPU often answers within a
// microsecond. The bound stays short because a spinning thread holds a CPU
// its peer may need when threads outnumber CPUs (measured with two busy
// processes beside a thread ping-pong: 50 us of spin made hops of 67 us).
// After a few waits in a row that outlasted the spin, the peer is slow:
// spin kSlowSpinNs only, with a full spin now and then (the policy of
// every spinning wait: csp/detail/spin_budget.hpp).
constexpr std::int64_t kThreadSpinNs = 10000;
constexpr std::int64_t kSlowSpinNs = 1000;

/// Spins until this thread is notified (true: the notification is taken, and
/// state_ is 0 again) or the spin bound or `deadline` passes (false).
bool spin_for_notification(ThreadParker* self, std::int64_t max_spin_ns, Deadline deadline) noexcept {
  if (max_spin_ns <= 0) return false;
  SpinBudget& budget = self->spin_;
  budget.max_ns = max_spin_ns;
  budget.slow_ns = kSlowSpinNs;
  const std::int64_t limit = budget.next_limit_ns();
  Clock::time_point start{};
  for (unsigned i = 1;; ++i) {
    // SYNC POINT with the release exchange in unpark_thread().
    if (self->state_.load(std::memory_order_acquire) == 1) {
      self->state_.store(0, std::memory_order_relaxed);  // one notification per wait: nobody else writes now
      budget.learn(0);
      return true;
    }
    cpu_relax();
    if (i % 32 == 0) {
      const Clock::time_point now = Clock::now();
      if (start == Clock::time_point{}) start = now;
      if (now - start >= std::chrono::nanoseconds(limit) || now >= deadline) break;
    }
  }
  budget.learn(max_spin_ns + 1);  // outlasted the spin
  return false;
}

/// wait() for a thread; out of line, so a coroutine's wait() saves no registers.
__attribute__((noinline)) std::uintptr_t wait_thread(ThreadParker* self, Waiter& w, Deadline deadline) {
  self->waiting_on_.store(&w, std::memory_order_release);
  Scheduler& s = *self->registered_with_;
  const bool timed = deadline != forever;
  if (timed) s.live_.fetch_add(kSource, std::memory_order_acq_rel);
  s.live_add(-1);
  bool timed_out = false;
  if (!spin_for_notification(self, s.config_.spin_us != 0 ? kThreadSpinNs : 0, deadline)) {
    for (;;) {
      // Announce that we sleep (2), unless the notification came (1).
      // SYNC POINT with the exchange in unpark_thread(): whichever comes
      // second sees the other's value, so a notifier that saw 0 left its 1
      // for this exchange, and one that saw 2 wakes the futex.
      if (self->state_.exchange(2, std::memory_order_acq_rel) == 1) {
        self->state_.store(0, std::memory_order_relaxed);
        break;
      }
      if (!timed_out && timed) {
        if (!futex_wait(&self->state_, 2, deadline)) {
          timed_out = true;
          if (w.try_select(kTimedOut)) {
            self->state_.store(0, std::memory_order_relaxed);  // no notifier comes: we won our own select
            s.live_.fetch_add(1, std::memory_order_acq_rel);  // we woke ourselves
            break;
          }
          // Someone selected us first: their wake is on its way.
        }
        continue;
      }
      futex_wait(&self->state_, 2, forever);
    }
  }
  if (timed) s.live_add(-kSource);
  {
    // The deadlock detector reads the waiter through waiting_on_ under
    // registry_mutex_ (Scheduler::check_deadlock_locked): clearing it under
    // the same lock keeps `w` alive while the detector may still read it. A
    // thread woken by another uncounted thread can otherwise leave wait()
    // (and reuse the frame) between the detector's load and its read.
    std::lock_guard lock(s.registry_mutex_);
    self->waiting_on_.store(nullptr, std::memory_order_relaxed);
  }
  return w.token();
}

}  // namespace

namespace {

inline std::uintptr_t wait_untraced(Waiter& w, Deadline deadline) {
  // Both set the parker's waiting_on_ (for the deadlock detector) themselves.
  Parker* p = w.parker_;
  if (p->kind_ == Parker::Kind::task) [[likely]]
    return wait_task(static_cast<Task*>(p), w, deadline);
  return wait_thread(static_cast<ThreadParker*>(p), w, deadline);
}

__attribute__((noinline)) std::uintptr_t wait_traced(Waiter& w, Deadline deadline) {
  const std::int64_t begin = trace_now_ns();
  const std::uintptr_t token = wait_untraced(w, deadline);
  trace_blocking(w.what_, w.object_, w.parker_, begin, token);
  return token;
}

}  // namespace

std::uintptr_t wait(Waiter& w, Deadline deadline) {
  if (trace_active()) [[unlikely]]
    return wait_traced(w, deadline);  // CSP_TRACE (csp/trace.hpp)
  return wait_untraced(w, deadline);
}

// ---------------------------------------------------------------------------

void Latch::arrive(std::exception_ptr error) noexcept {
  {
    // Our reference to the exception must be gone before the joiner can
    // see us arrive: the joiner may rethrow and destroy it meanwhile.
    std::exception_ptr mine = std::move(error);
    if (mine && !error_claimed_.exchange(true, std::memory_order_acq_rel)) first_error_ = std::move(mine);
  }
  if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // SYNC POINT: release pairs with the acquire in wait()/done(); after this
  // exchange the latch may be gone, only the joiner's waiter is touched.
  Waiter* joiner = joiner_.exchange(done_mark(), std::memory_order_acq_rel);
  if (joiner && joiner->try_select(kWoken)) joiner->wake();
}

void Latch::wait() noexcept {
  if (done()) return;
  Waiter w("join", {}, false);
  Waiter* expected = nullptr;
  if (!joiner_.compare_exchange_strong(expected, &w, std::memory_order_acq_rel, std::memory_order_acquire))
    return;  // everyone arrived meanwhile
  detail::wait(w, forever);
}

void SpawnState::join() {
  latch_.wait();
  if (!joined_.exchange(true)) {
    if (auto e = latch_.first_error()) std::rethrow_exception(e);
  }
}

void spawn(std::shared_ptr<SpawnState> state, std::unique_ptr<ProcessBody> body, Placement placement) {
  Parker* self = current_parker();
  self->spawned_.push_back(state);
  start(std::move(body), &state->latch_, placement);
}

// ---- contended CPUs (csp/detail/spin_budget.hpp) ----
namespace {
// The system calls of one round of a yielding spin take about a
// microsecond, or as long as another of our threads runs after the yield
// (tens of microseconds: a home's frame server, a worker's idle spin). A
// round longer than kDescheduledNs means a thread that does not yield had
// the CPU: another program's, for a time slice (0.75 ms and up).
constexpr std::int64_t kContendedForNs = 20'000'000;
// Each spin after a contended period is a probe that may lose a time slice;
// while probes keep finding the CPUs contended, the period doubles up to
// this.
constexpr std::int64_t kMaxContendedForNs = 1'000'000'000;

// Until when (steady clock, ns) the CPUs count as contended. Any thread of
// this process may set it; relaxed, since a stale value only misjudges one
// spin.
std::atomic<std::int64_t> g_contended_until_ns{0};
// The length of the last contended period.
std::atomic<std::int64_t> g_contended_for_ns{kContendedForNs};

std::int64_t since_epoch_ns(Clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

bool cpus_contended(Clock::time_point now) noexcept {
  return since_epoch_ns(now) < g_contended_until_ns.load(std::memory_order_relaxed);
}

// No spinning for a while, twice as long as last time if that period ended
// less than its own length ago.
void note_cpus_contended(Clock::time_point now) noexcept {
  const std::int64_t t = since_epoch_ns(now);
  const std::int64_t last = g_contended_for_ns.load(std::memory_order_relaxed);
  const bool again = t < g_contended_until_ns.load(std::memory_order_relaxed) + last;
  const std::int64_t period = again ? std::min(2 * last, kMaxContendedForNs) : kContendedForNs;
  g_contended_for_ns.store(period, std::memory_order_relaxed);
  g_contended_until_ns.store(t + period, std::memory_order_relaxed);
}

std::uint64_t next_process_id() noexcept {
  static std::atomic<std::uint64_t> id{0};
  return ++id;
}

}  // namespace csp::detail

namespace csp {

void sleep_until(std::chrono::steady_clock::time_point deadline) {
  detail::Waiter w("sleep", {}, false);
  detail::wait(w, deadline);
}

namespace detail {

bool wait_fd(int fd, std::uint32_t events, Deadline deadline, const char* what, bool soon) {
  Task* self = current_task();
  if (!self) {
    pollfd p{fd, static_cast<short>(events), 0};
    const bool traced = trace_active();  // CSP_TRACE (csp/trace.hpp): threads poll here, not in wait()
    const std::int64_t begin = traced ? trace_now_ns() : 0;
    auto done = [&](bool ready) {
      if (traced) trace_poll_wait(what, begin, ready);
      return ready;
    };
    for (;;) {
      int timeout = -1;
      if (deadline != forever) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (ms <= 0) return done(false);
        timeout = static_cast<int>(std::min<long long>(ms, INT_MAX));
      }
      int r = ::poll(&p, 1, timeout);
      if (r > 0) return done(true);
      if (r == 0) return done(false);
      if (errno != EINTR) throw_system_error("csp: poll");
    }
  }
  Worker* home = current_worker();
  Waiter w(what, {}, false);
  FdWait node;
  node.waiter_ = &w;
  epoll_event ev{};
  ev.events = events | EPOLLONESHOT;
  ev.data.ptr = &node;
  scheduler().live_.fetch_add(kSource, std::memory_order_acq_rel);
  home->fd_count_.fetch_add(1);
  if (soon) home->soon_fd_count_.fetch_add(1, std::memory_order_relaxed);
  if (::epoll_ctl(home->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (soon) home->soon_fd_count_.fetch_sub(1, std::memory_order_relaxed);
    home->fd_count_.fetch_sub(1);
    scheduler().live_add(-kSource);
    throw_system_error("csp: epoll_ctl ADD fd " + std::to_string(fd));
  }
  home->notify();  // the worker may sleep in epoll with a timeout from before
  std::uintptr_t token = wait(w, deadline);
  {
    std::lock_guard lock(home->fd_mutex_);  // waits for a dispatch in progress
    ::epoll_ctl(home->epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  }
  if (soon) home->soon_fd_count_.fetch_sub(1, std::memory_order_relaxed);
  home->fd_count_.fetch_sub(1);
  scheduler().live_add(-kSource);
  return token != kTimedOut;
}

}  // namespace detail
}  // namespace csp
