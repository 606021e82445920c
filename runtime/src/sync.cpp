// sync.cpp: csp::Semaphore, csp::Mutex, csp::Event, csp::Barrier, and the
// shared-memory pieces of csp/detail/shared_memory.hpp.
//
// Each primitive has two states behind one handle:
// - In-process (the default): a SpinLock guards a count or flag and an
//   intrusive FIFO of WaitNodes, each pointing at a Waiter on its blocked
//   owner's stack. Whoever frees the resource pops nodes until one wins its
//   Waiter's CAS (try_select(kWoken)), hands the resource to it (the count
//   or lock never becomes visible as free in between), drops the lock, then
//   wakes it. A waiter that lost its CAS to a timeout or the deadlock
//   detector unlinks its own node under the lock before it leaves.
// - Interprocess: lock-free state in a SharedBlock. Threads sleep on a
//   shared futex; coroutines poll with a bounded back-off
//   (shared_wait_until in csp/detail/shared_memory.hpp).
//
// Invariants (in-process, each guarded by the state's `lock_`)
// - Semaphore: count_ > 0 implies no node in waiters_ can still be selected
//   (a release hands its permit to a waiter before it would count it).
// - Mutex: locked_ is false implies the same; unlock() with a waiter keeps
//   locked_ true and makes that waiter the holder.
// - Event: flag_ true implies waiters_ holds no selectable node.
// - Barrier: arrived_ < enrolled_ outside sync()/resign(); the nodes of
//   waiters_ are the arrived_ processes of phase_.
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <new>
#include <pthread.h>

#include <csp/barrier.hpp>
#include <csp/detail/settle.hpp>
#include <csp/detail/shared_memory.hpp>
#include <csp/detail/spin_lock.hpp>
#include <csp/error.hpp>
#include <csp/event.hpp>
#include <csp/mutex.hpp>
#include <csp/runtime.hpp>
#include <csp/semaphore.hpp>

#include "scheduler.hpp"

namespace csp::detail {

// ---------------------------------------------------------------------------
// Shared memory

struct SharedBlock::Region {
  boost::interprocess::mapped_region region;
};

SharedBlock::SharedBlock(std::size_t bytes) {
  try {
    region_ = std::make_unique<Region>(Region{boost::interprocess::anonymous_shared_memory(bytes)});
  } catch (const boost::interprocess::interprocess_exception& e) {
    throw SystemError(std::error_code(e.get_native_error(), std::system_category()),
                      "csp: cannot map " + std::to_string(bytes) + " bytes of shared memory");
  }
  data_ = region_->region.get_address();
  size_ = region_->region.get_size();
}

SharedBlock::~SharedBlock() = default;

void shared_futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  timespec ts{};
  timespec* timeout = nullptr;
  if (deadline != forever) {
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    ts = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    timeout = &ts;
  }
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, timeout, nullptr, 0);
}

void shared_futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

void shared_backoff(unsigned round, Deadline deadline) {
  if (round < 4) {
    csp::yield();
    return;
  }
  unsigned shift = std::min(round - 4, 6u);  // 20 us .. 1.28 ms, capped at 1 ms
  auto pause = std::min<Clock::duration>(std::chrono::microseconds(20u << shift), std::chrono::milliseconds(1));
  auto until = Clock::now() + pause;
  csp::sleep_until(std::min(until, deadline));
}

namespace {

std::atomic<std::uint32_t> g_pid{0};  // this OS process's pid, reset in forked children

std::uint32_t my_pid() noexcept {
  std::uint32_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    static const bool hooked = [] {
      ::pthread_atfork(nullptr, nullptr, [] { g_pid.store(0, std::memory_order_relaxed); });
      return true;
    }();
    (void)hooked;
    pid = static_cast<std::uint32_t>(::getpid());
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

bool process_is_dead(std::uint32_t pid) noexcept {
  return pid != 0 && ::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH;
}

[[noreturn]] void throw_deadlock() { throw Deadlock(deadlock_message()); }

/// An in-process primitive lives in one OS process's heap: a forked child
/// (an os_process) has a private copy of it, as of the fork. Using that copy
/// would silently synchronise with nobody, so it is refused.
void same_process(std::uint32_t made_in, const std::string& name) {
  if (my_pid() != made_in)
    throw Error("csp: " + name + " was made in OS process " + std::to_string(made_in) +
                " without csp::interprocess, so this process (" + std::to_string(my_pid()) +
                ") has only a private copy; construct it with csp::interprocess to share it with os_process children");
}

std::string next_name(const char* kind) {
  static std::atomic<std::uint64_t> id{0};
  return std::string(kind) + "#" + std::to_string(++id);
}

}  // namespace

bool SharedLock::try_lock() noexcept {
  std::uint32_t expected = 0;
  // SYNC POINT: acquire pairs with the release store in unlock().
  return owner_.compare_exchange_strong(expected, my_pid(), std::memory_order_acquire, std::memory_order_relaxed);
}

bool SharedLock::lock_until(Deadline deadline) {
  if (try_lock()) return true;
  return shared_wait_until(owner_, sleepers_, deadline, [this] { return try_lock(); },
                           [this] {
                             // Robust take-over: free a lock whose holder's OS process is gone.
                             std::uint32_t holder = owner_.load(std::memory_order_relaxed);
                             if (process_is_dead(holder) &&
                                 owner_.compare_exchange_strong(holder, 0, std::memory_order_acq_rel)) {
                               shared_futex_wake(&owner_, INT_MAX);
                             }
                           });
}

void SharedLock::unlock() {
  if (owner_.load(std::memory_order_relaxed) == 0) throw Error("csp: unlock of an interprocess mutex nobody holds");
  // SYNC POINT: release pairs with the acquire CAS in try_lock(); seq_cst
  // orders it before the read of sleepers_ (see shared_wait_until).
  owner_.store(0, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) != 0) shared_futex_wake(&owner_, 1);
}

// ---------------------------------------------------------------------------
// In-process wait list

namespace {

/// A blocked process's entry in a primitive's FIFO; lives on its stack.
struct WaitNode {
  Waiter* waiter_ = nullptr;
  WaitNode* prev_ = nullptr;
  WaitNode* next_ = nullptr;
  bool linked_ = false;   // in the list (guarded by the primitive's lock)
  std::uint64_t phase_ = 0;  // Barrier: the phase it arrived in
};

class WaitList {
 public:
  void push_back(WaitNode* n) noexcept {
    n->prev_ = tail_;
    n->next_ = nullptr;
    if (tail_) tail_->next_ = n; else head_ = n;
    tail_ = n;
    n->linked_ = true;
  }
  WaitNode* pop_front() noexcept {
    WaitNode* n = head_;
    if (n) unlink(n);
    return n;
  }
  void unlink(WaitNode* n) noexcept {
    if (!n->linked_) return;
    if (n->prev_) n->prev_->next_ = n->next_; else head_ = n->next_;
    if (n->next_) n->next_->prev_ = n->prev_; else tail_ = n->prev_;
    n->prev_ = n->next_ = nullptr;
    n->linked_ = false;
  }
  /// Pops the first node whose waiter it can select with kWoken, or null.
  WaitNode* pop_selectable() noexcept {
    while (WaitNode* n = pop_front())
      if (n->waiter_->try_select(kWoken)) return n;
    return nullptr;
  }
  /// Selects every node it can; returns them chained through next_ (they
  /// are the caller's until it wakes them).
  WaitNode* pop_all_selectable() noexcept {
    WaitNode* won = nullptr;
    while (WaitNode* n = pop_front()) {
      if (n->waiter_->try_select(kWoken)) {
        n->next_ = won;
        won = n;
      }
    }
    return won;
  }

 private:
  WaitNode* head_ = nullptr;
  WaitNode* tail_ = nullptr;
};

/// Wakes a chain from pop_all_selectable(); call after dropping the lock.
void wake_chain(WaitNode* n) noexcept {
  while (n) {
    WaitNode* next = n->next_;  // read before the wake: the node dies with its owner's frame
    n->waiter_->wake();
    n = next;
  }
}

/// The blocking half every in-process primitive shares. Called with `lock`
/// held and `node` not yet linked: links it, unlocks, waits. Returns true
/// when a peer selected it (kWoken: the resource was handed over); false
/// on timeout (node unlinked again); throws csp::Deadlock.
bool park(SpinLock& lock, WaitList& list, WaitNode& node, Deadline deadline) {
  list.push_back(&node);
  lock.unlock();
  std::uintptr_t token = detail::wait(*node.waiter_, deadline);
  if (token == kWoken) return true;
  lock.lock();
  list.unlink(&node);
  lock.unlock();
  if (token == kDeadlock) throw_deadlock();
  return false;
}

bool deadline_passed(Deadline d) { return d != forever && d <= Clock::now(); }

}  // namespace

// ---------------------------------------------------------------------------
// Semaphore

class SemaphoreState {
 public:
  virtual ~SemaphoreState() = default;
  virtual bool acquire_until(Deadline deadline) = 0;
  virtual void release(std::size_t n) = 0;
  [[nodiscard]] virtual std::size_t available() const = 0;
  [[nodiscard]] virtual bool interprocess() const noexcept = 0;
};

namespace {

class InprocSemaphore final : public SemaphoreState {
 public:
  explicit InprocSemaphore(std::size_t initial) : count_(initial), name_(next_name("semaphore")) {}

  bool acquire_until(Deadline deadline) override {
    same_process(pid_, name_);
    lock_.lock();
    if (count_ > 0) {
      --count_;
      lock_.unlock();
      return true;
    }
    if (deadline_passed(deadline)) {
      lock_.unlock();
      return false;
    }
    Waiter w("acquire", name_);
    WaitNode node{&w};
    return park(lock_, waiters_, node, deadline);
  }

  void release(std::size_t n) override {
    same_process(pid_, name_);
    WaitNode* won = nullptr;
    lock_.lock();
    for (; n > 0; --n) {
      if (WaitNode* node = waiters_.pop_selectable()) {
        node->next_ = won;  // handed this permit
        won = node;
      } else {
        count_ += n;
        break;
      }
    }
    lock_.unlock();
    wake_chain(won);
  }

  [[nodiscard]] std::size_t available() const override {
    same_process(pid_, name_);
    std::lock_guard guard(lock_);
    return count_;
  }
  [[nodiscard]] bool interprocess() const noexcept override { return false; }

 private:
  mutable SpinLock lock_;  // guards count_ and waiters_
  std::size_t count_;      // free permits
  WaitList waiters_;       // blocked acquirers, oldest first
  const std::string name_;  // for deadlock reports
  const std::uint32_t pid_ = my_pid();  // the OS process it belongs to
};

/// Lives in the shared block.
struct SharedSemaphoreWords {
  std::atomic<std::uint32_t> count_{0};     // free permits
  std::atomic<std::uint32_t> sleepers_{0};  // threads asleep on count_
};

class SharedSemaphore final : public SemaphoreState {
 public:
  explicit SharedSemaphore(std::size_t initial) : block_(sizeof(SharedSemaphoreWords)) {
    if (initial > INT_MAX) throw Error("csp: an interprocess semaphore holds at most 2^31-1 permits");
    words_ = new (block_.data()) SharedSemaphoreWords;
    words_->count_.store(static_cast<std::uint32_t>(initial));
  }

  bool try_take() noexcept {
    std::uint32_t c = words_->count_.load(std::memory_order_relaxed);
    // SYNC POINT: acquire pairs with the release half of fetch_add in release().
    while (c > 0)
      if (words_->count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    return false;
  }

  bool acquire_until(Deadline deadline) override {
    if (try_take()) return true;
    return shared_wait_until(words_->count_, words_->sleepers_, deadline, [this] { return try_take(); }, [] {});
  }

  void release(std::size_t n) override {
    if (n == 0) return;
    std::uint32_t before = words_->count_.fetch_add(static_cast<std::uint32_t>(n), std::memory_order_seq_cst);
    if (before + n > INT_MAX) {
      words_->count_.fetch_sub(static_cast<std::uint32_t>(n));
      throw Error("csp: interprocess semaphore overflow (more than 2^31-1 permits)");
    }
    if (words_->sleepers_.load(std::memory_order_seq_cst) != 0)
      shared_futex_wake(&words_->count_, n > INT_MAX ? INT_MAX : static_cast<int>(n));
  }

  [[nodiscard]] std::size_t available() const override { return words_->count_.load(std::memory_order_acquire); }
  [[nodiscard]] bool interprocess() const noexcept override { return true; }

 private:
  SharedBlock block_;                     // holds *words_
  SharedSemaphoreWords* words_ = nullptr;
};

}  // namespace

// ---------------------------------------------------------------------------
// Mutex

class MutexState {
 public:
  virtual ~MutexState() = default;
  virtual bool lock_until(Deadline deadline) = 0;
  virtual bool try_lock() = 0;
  virtual void unlock() = 0;
  [[nodiscard]] virtual bool interprocess() const noexcept = 0;
};

namespace {

class InprocMutex final : public MutexState {
 public:
  InprocMutex() : name_(next_name("mutex")) {}

  bool lock_until(Deadline deadline) override {
    same_process(pid_, name_);
    lock_.lock();
    if (!locked_) {
      locked_ = true;
      lock_.unlock();
      return true;
    }
    if (deadline_passed(deadline)) {
      lock_.unlock();
      return false;
    }
    Waiter w("lock", name_);
    WaitNode node{&w};
    return park(lock_, waiters_, node, deadline);
  }

  bool try_lock() override {
    same_process(pid_, name_);
    std::lock_guard guard(lock_);
    if (locked_) return false;
    locked_ = true;
    return true;
  }

  void unlock() override {
    same_process(pid_, name_);
    lock_.lock();
    if (!locked_) {
      lock_.unlock();
      throw Error("csp: unlock of " + name_ + ", which nobody holds");
    }
    WaitNode* next = waiters_.pop_selectable();  // becomes the holder; locked_ stays true
    if (!next) locked_ = false;
    lock_.unlock();
    if (next) next->waiter_->wake();
  }

  [[nodiscard]] bool interprocess() const noexcept override { return false; }

 private:
  SpinLock lock_;           // guards locked_ and waiters_
  bool locked_ = false;     // somebody holds the mutex
  WaitList waiters_;        // blocked lockers, oldest first
  const std::string name_;  // for deadlock reports
  const std::uint32_t pid_ = my_pid();  // the OS process it belongs to
};

class SharedMutex final : public MutexState {
 public:
  SharedMutex() : block_(sizeof(SharedLock)), lock_(new (block_.data()) SharedLock) {}
  bool lock_until(Deadline deadline) override { return lock_->lock_until(deadline); }
  bool try_lock() override { return lock_->try_lock(); }
  void unlock() override { lock_->unlock(); }
  [[nodiscard]] bool interprocess() const noexcept override { return true; }

 private:
  SharedBlock block_;  // holds *lock_
  SharedLock* lock_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Event

class EventState {
 public:
  virtual ~EventState() = default;
  virtual void set() = 0;
  virtual void clear() = 0;
  [[nodiscard]] virtual bool is_set() const = 0;
  virtual bool wait_until(Deadline deadline) = 0;
  [[nodiscard]] virtual bool interprocess() const noexcept = 0;
};

namespace {

class InprocEvent final : public EventState {
 public:
  InprocEvent() : name_(next_name("event")) {}

  void set() override {
    same_process(pid_, name_);
    lock_.lock();
    flag_.store(true, std::memory_order_release);
    WaitNode* won = waiters_.pop_all_selectable();
    lock_.unlock();
    wake_chain(won);
  }
  void clear() override {
    same_process(pid_, name_);
    std::lock_guard guard(lock_);
    flag_.store(false, std::memory_order_release);
  }
  [[nodiscard]] bool is_set() const override { return flag_.load(std::memory_order_acquire); }

  bool wait_until(Deadline deadline) override {
    same_process(pid_, name_);
    lock_.lock();
    if (flag_.load(std::memory_order_relaxed)) {
      lock_.unlock();
      return true;
    }
    if (deadline_passed(deadline)) {
      lock_.unlock();
      return false;
    }
    Waiter w("wait", name_);
    WaitNode node{&w};
    return park(lock_, waiters_, node, deadline);
  }
  [[nodiscard]] bool interprocess() const noexcept override { return false; }

 private:
  SpinLock lock_;                 // guards waiters_ and writes of flag_
  std::atomic<bool> flag_{false};  // the event's flag (read without the lock by is_set)
  WaitList waiters_;              // blocked waiters
  const std::string name_;        // for deadlock reports
  const std::uint32_t pid_ = my_pid();  // the OS process it belongs to
};

/// Lives in the shared block. word_ = generation << 1 | flag; every set()
/// of a cleared event starts a new generation, so a waiter that saw the
/// flag down returns once the generation moved, even if cleared again.
struct SharedEventWords {
  std::atomic<std::uint32_t> word_{0};
  std::atomic<std::uint32_t> sleepers_{0};  // threads asleep on word_
};

class SharedEvent final : public EventState {
 public:
  SharedEvent() : block_(sizeof(SharedEventWords)), words_(new (block_.data()) SharedEventWords) {}

  void set() override {
    std::uint32_t w = words_->word_.load(std::memory_order_relaxed);
    do {
      if (w & 1u) return;
    } while (!words_->word_.compare_exchange_weak(w, (((w >> 1) + 1) << 1) | 1u, std::memory_order_seq_cst));
    if (words_->sleepers_.load(std::memory_order_seq_cst) != 0) shared_futex_wake(&words_->word_, INT_MAX);
  }
  void clear() override { words_->word_.fetch_and(~1u, std::memory_order_acq_rel); }
  [[nodiscard]] bool is_set() const override { return (words_->word_.load(std::memory_order_acquire) & 1u) != 0; }

  bool wait_until(Deadline deadline) override {
    const std::uint32_t seen = words_->word_.load(std::memory_order_acquire);
    if (seen & 1u) return true;
    return shared_wait_until(words_->word_, words_->sleepers_, deadline,
                             [&] {
                               std::uint32_t w = words_->word_.load(std::memory_order_acquire);
                               return (w & 1u) || (w >> 1) != (seen >> 1);
                             },
                             [] {});
  }
  [[nodiscard]] bool interprocess() const noexcept override { return true; }

 private:
  SharedBlock block_;  // holds *words_
  SharedEventWords* words_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Barrier

class BarrierState {
 public:
  virtual ~BarrierState() = default;
  virtual void sync() = 0;
  virtual void enroll() = 0;
  virtual void resign() = 0;
  [[nodiscard]] virtual std::size_t enrolled() const = 0;
  [[nodiscard]] virtual bool interprocess() const noexcept = 0;
};

namespace {

class InprocBarrier final : public BarrierState {
 public:
  explicit InprocBarrier(std::size_t enrolled) : enrolled_(enrolled), name_(next_name("barrier")) {}

  void sync() override {
    same_process(pid_, name_);
    lock_.lock();
    if (enrolled_ == 0) {
      lock_.unlock();
      throw Error("csp: sync on " + name_ + ", which has nobody enrolled");
    }
    if (arrived_ + 1 >= enrolled_) {
      complete_phase_locked();  // unlocks
      return;
    }
    ++arrived_;
    Waiter w("sync", name_);
    WaitNode node{&w};
    node.phase_ = phase_;
    waiters_.push_back(&node);
    lock_.unlock();
    std::uintptr_t token = detail::wait(w, forever);
    if (token == kWoken) return;
    lock_.lock();
    waiters_.unlink(&node);
    if (phase_ == node.phase_) --arrived_;  // we leave the phase we arrived in
    lock_.unlock();
    if (token == kDeadlock) throw_deadlock();
  }

  void enroll() override {
    same_process(pid_, name_);
    std::lock_guard guard(lock_);
    ++enrolled_;
  }

  void resign() override {
    same_process(pid_, name_);
    lock_.lock();
    if (enrolled_ == 0) {
      lock_.unlock();
      throw Error("csp: resign from " + name_ + ", which has nobody enrolled");
    }
    --enrolled_;
    if (arrived_ > 0 && arrived_ >= enrolled_) {
      complete_phase_locked();
      return;
    }
    lock_.unlock();
  }

  [[nodiscard]] std::size_t enrolled() const override {
    same_process(pid_, name_);
    std::lock_guard guard(lock_);
    return enrolled_;
  }
  [[nodiscard]] bool interprocess() const noexcept override { return false; }

 private:
  /// Releases everyone waiting in this phase and starts the next; unlocks.
  void complete_phase_locked() {
    WaitNode* won = waiters_.pop_all_selectable();
    arrived_ = 0;
    ++phase_;
    lock_.unlock();
    wake_chain(won);
  }

  mutable SpinLock lock_;    // guards every member below
  std::size_t enrolled_;     // processes taking part
  std::size_t arrived_ = 0;  // of them, waiting in sync() in this phase
  std::uint64_t phase_ = 0;  // completed phases
  WaitList waiters_;         // the arrived_ processes
  const std::string name_;   // for deadlock reports
  const std::uint32_t pid_ = my_pid();  // the OS process it belongs to
};

/// Lives in the shared block. state_ packs phase (bits 32..63), enrolled
/// (16..31) and arrived (0..15), so arriving and completing a phase are one
/// CAS each. done_ counts completed phases for threads to sleep on: it is
/// bumped after the CAS that completes a phase.
struct SharedBarrierWords {
  std::atomic<std::uint64_t> state_{0};
  std::atomic<std::uint32_t> done_{0};
  std::atomic<std::uint32_t> sleepers_{0};  // threads asleep on done_
};

constexpr std::uint64_t kCountMask = 0xffff;
std::uint64_t phase_of(std::uint64_t s) { return s >> 32; }
std::uint64_t enrolled_of(std::uint64_t s) { return (s >> 16) & kCountMask; }
std::uint64_t arrived_of(std::uint64_t s) { return s & kCountMask; }
std::uint64_t pack(std::uint64_t phase, std::uint64_t enrolled, std::uint64_t arrived) {
  return (phase << 32) | (enrolled << 16) | arrived;
}

class SharedBarrier final : public BarrierState {
 public:
  explicit SharedBarrier(std::size_t enrolled)
      : block_(sizeof(SharedBarrierWords)), words_(new (block_.data()) SharedBarrierWords) {
    if (enrolled > kCountMask) throw Error("csp: an interprocess barrier takes at most 65535 processes");
    words_->state_.store(pack(0, enrolled, 0));
  }

  void sync() override {
    std::uint64_t s = words_->state_.load(std::memory_order_acquire);
    std::uint64_t next;
    bool completes;
    do {
      if (enrolled_of(s) == 0) throw Error("csp: sync on an interprocess barrier with nobody enrolled");
      completes = arrived_of(s) + 1 >= enrolled_of(s);
      next = completes ? pack(phase_of(s) + 1, enrolled_of(s), 0) : s + 1;
    } while (!words_->state_.compare_exchange_weak(s, next, std::memory_order_seq_cst));
    if (completes) {
      finish_phase();
      return;
    }
    const std::uint64_t phase = phase_of(s);
    shared_wait_until(words_->done_, words_->sleepers_, forever,
                      [&] { return phase_of(words_->state_.load(std::memory_order_acquire)) != phase; }, [] {});
  }

  void enroll() override {
    std::uint64_t s = words_->state_.load(std::memory_order_relaxed);
    do {
      if (enrolled_of(s) == kCountMask) throw Error("csp: an interprocess barrier takes at most 65535 processes");
    } while (!words_->state_.compare_exchange_weak(s, s + (std::uint64_t{1} << 16), std::memory_order_acq_rel));
  }

  void resign() override {
    std::uint64_t s = words_->state_.load(std::memory_order_relaxed);
    std::uint64_t next;
    bool completes;
    do {
      if (enrolled_of(s) == 0) throw Error("csp: resign from an interprocess barrier with nobody enrolled");
      std::uint64_t e = enrolled_of(s) - 1;
      completes = arrived_of(s) > 0 && arrived_of(s) >= e;
      next = completes ? pack(phase_of(s) + 1, e, 0) : pack(phase_of(s), e, arrived_of(s));
    } while (!words_->state_.compare_exchange_weak(s, next, std::memory_order_seq_cst));
    if (completes) finish_phase();
  }

  [[nodiscard]] std::size_t enrolled() const override {
    return enrolled_of(words_->state_.load(std::memory_order_acquire));
  }
  [[nodiscard]] bool interprocess() const noexcept override { return true; }

 private:
  void finish_phase() noexcept {
    // SYNC POINT: the waiters' seq_cst loads in shared_wait_until pair with
    // this bump and our read of sleepers_.
    words_->done_.fetch_add(1, std::memory_order_seq_cst);
    if (words_->sleepers_.load(std::memory_order_seq_cst) != 0) shared_futex_wake(&words_->done_, INT_MAX);
  }

  SharedBlock block_;  // holds *words_
  SharedBarrierWords* words_;
};

}  // namespace
}  // namespace csp::detail

// ---------------------------------------------------------------------------
// Handles

namespace csp {

Semaphore::Semaphore(std::size_t initial) : state_(std::make_shared<detail::InprocSemaphore>(initial)) {}
Semaphore::Semaphore(std::size_t initial, interprocess_t)
    : state_(std::make_shared<detail::SharedSemaphore>(initial)) {}
void Semaphore::acquire() { detail::settle_writes(); state_->acquire_until(detail::forever); }
bool Semaphore::try_acquire() { detail::settle_writes(); return state_->acquire_until(detail::Clock::now()); }
bool Semaphore::try_acquire_until(std::chrono::steady_clock::time_point t) { detail::settle_writes(); return state_->acquire_until(t); }
void Semaphore::release(std::size_t n) { detail::settle_writes(); state_->release(n); }
std::size_t Semaphore::available() const { return state_->available(); }
bool Semaphore::is_interprocess() const noexcept { return state_->interprocess(); }

Mutex::Mutex() : state_(std::make_shared<detail::InprocMutex>()) {}
Mutex::Mutex(interprocess_t) : state_(std::make_shared<detail::SharedMutex>()) {}
void Mutex::lock() { detail::settle_writes(); state_->lock_until(detail::forever); }
bool Mutex::try_lock() { detail::settle_writes(); return state_->try_lock(); }
bool Mutex::try_lock_until(std::chrono::steady_clock::time_point t) { detail::settle_writes(); return state_->lock_until(t); }
void Mutex::unlock() { detail::settle_writes(); state_->unlock(); }
bool Mutex::is_interprocess() const noexcept { return state_->interprocess(); }

Event::Event() : state_(std::make_shared<detail::InprocEvent>()) {}
Event::Event(interprocess_t) : state_(std::make_shared<detail::SharedEvent>()) {}
void Event::set() { detail::settle_writes(); state_->set(); }
void Event::clear() { detail::settle_writes(); state_->clear(); }
bool Event::is_set() const { return state_->is_set(); }
void Event::wait() { detail::settle_writes(); state_->wait_until(detail::forever); }
bool Event::wait_until(std::chrono::steady_clock::time_point t) { detail::settle_writes(); return state_->wait_until(t); }
bool Event::is_interprocess() const noexcept { return state_->interprocess(); }

Barrier::Barrier(std::size_t enrolled) : state_(std::make_shared<detail::InprocBarrier>(enrolled)) {}
Barrier::Barrier(std::size_t enrolled, interprocess_t) : state_(std::make_shared<detail::SharedBarrier>(enrolled)) {}
void Barrier::sync() { detail::settle_writes(); state_->sync(); }
void Barrier::enroll() { state_->enroll(); }
void Barrier::resign() { state_->resign(); }
std::size_t Barrier::enrolled() const { return state_->enrolled(); }
bool Barrier::is_interprocess() const noexcept { return state_->interprocess(); }

}  // namespace csp
