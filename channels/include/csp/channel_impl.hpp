// csp/channel_impl.hpp: the interface every channel implementation (transport)
// provides, and the in-process implementation behind csp::Channel<T>.
//
// Contract of a ChannelImpl<T> (each transport passes the conformance suite
// in tests/channels/):
// - read_until(d): the next value, or nullopt once `d` passed with none;
//   throws ChannelPoisoned once poisoned, ChannelRetired once the writer side
//   retired and nothing is left to read. A value it returns is removed from
//   the channel exactly once.
// - write_until(v, d): true once v was taken by a reader or buffered; false
//   when `d` passed first, and then v is untouched (still the caller's).
//   Throws ChannelPoisoned / ChannelRetired (reader side retired) without
//   touching v.
// - join(side)/leave(side): membership of ends; a side retires when its last
//   member leaves, never when it never had one.
// - poison(): permanent; wakes every blocked operation.
// - lockable() implementations also offer the *_locked primitives that
//   alternation uses to commit a choice under the channel's lock (Go's
//   select). Other implementations are polled by alternation.
//
// InprocChannel invariants (guarded by `lock_`):
// - At most one of readers_ and writers_ holds ops that can still be
//   selected, except transiently for ops of selects that were won elsewhere
//   (those are dropped by whoever meets them).
// - If readers_ holds a live op, the buffer is empty; if writers_ holds a
//   live op, the buffer is full.
// - An op's waiter is woken only after its value moved, by the winner of its
//   selection, and after the winner has dropped the lock.
// - A blocking read/write without a deadline gives its Waiter `guard_ =
//   &lock_`: every selection of it happens under lock_ (select_locked; the
//   deadlock detector takes lock_ too), so no CAS is needed. Ops of
//   alternations and timed waits have no guard and are selected by CAS.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <csp/buffer.hpp>
#include <csp/detail/settle.hpp>
#include <csp/detail/spin_lock.hpp>
#include <csp/detail/wait.hpp>
#include <csp/error.hpp>

namespace csp {

/// Cross-process transports a channel can be given (DESIGN §4).
enum class transport { automatic, inproc, shm, pipe, socket };

namespace detail {

std::string deadlock_message();  // defined in the runtime

enum class Side : std::uint8_t { reader, writer };

/// A registration of a blocked operation (or one guard of a select) in a
/// channel's queue. Lives on the blocked process's stack.
struct Op {
  Waiter* waiter_ = nullptr;      // whose selection this op competes for
  std::uintptr_t token_ = 0;      // the token it selects the waiter with
  void* slot_ = nullptr;          // reader: std::optional<T>* to fill; writer: T* to take
  Op* prev_ = nullptr;
  Op* next_ = nullptr;
  const void* queue_ = nullptr;   // the OpQueue it is in, or null (guarded by the channel lock)
};

/// FIFO of ops, intrusive.
class OpQueue {
 public:
  void push_back(Op* op) noexcept {
    op->prev_ = tail_;
    op->next_ = nullptr;
    if (tail_) tail_->next_ = op; else head_ = op;
    tail_ = op;
    op->queue_ = this;
  }
  Op* pop_front() noexcept {
    Op* op = head_;
    if (!op) return nullptr;
    head_ = op->next_;
    if (head_) head_->prev_ = nullptr; else tail_ = nullptr;
    op->next_ = nullptr;  // prev_ is null at the head already
    op->queue_ = nullptr;
    return op;
  }
  void unlink(Op* op) noexcept {
    if (op->queue_ != this) return;  // in the other queue, or in none
    if (op->prev_) op->prev_->next_ = op->next_; else head_ = op->next_;
    if (op->next_) op->next_->prev_ = op->prev_; else tail_ = op->prev_;
    op->prev_ = op->next_ = nullptr;
    op->queue_ = nullptr;
  }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

 private:
  Op* head_ = nullptr;
  Op* tail_ = nullptr;
};

/// Outcome of trying an operation under the lock.
enum class Poll : std::uint8_t { ready, not_ready, retired, poisoned };

/// The untyped part of every channel.
class ChannelCore {
 public:
  explicit ChannelCore(std::string name) : name_(std::move(name)) {
    static std::atomic<std::uint64_t> next_id{0};
    id_ = ++next_id;
    if (name_.empty()) name_ = "channel#" + std::to_string(id_);
  }
  virtual ~ChannelCore() = default;
  ChannelCore(const ChannelCore&) = delete;
  ChannelCore& operator=(const ChannelCore&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Global order in which alternation takes channel locks.
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }

  virtual void join(Side side) = 0;
  virtual void leave(Side side) = 0;
  virtual void poison() = 0;
  [[nodiscard]] virtual bool poisoned() const = 0;
  /// True if lock()/unlock() and the *_locked primitives are available.
  [[nodiscard]] virtual bool lockable() const noexcept { return false; }
  virtual void lock() noexcept {}
  virtual void unlock() noexcept {}
  /// Under lock: unlinks an op enqueued by alternation (no-op if gone).
  virtual void unlink_locked(Op&) noexcept {}
  /// The transport values take when this channel crosses a process boundary.
  [[nodiscard]] transport preferred_transport() const noexcept { return transport_; }
  void set_preferred_transport(transport t) noexcept { transport_ = t; }

  [[noreturn]] void throw_poisoned() const { throw ChannelPoisoned("csp: channel '" + name_ + "' is poisoned"); }
  [[noreturn]] void throw_retired(Side side) const {
    throw ChannelRetired("csp: channel '" + name_ + "': every " +
                         (side == Side::reader ? "reader" : "writer") + " has retired");
  }
  [[noreturn]] static void throw_deadlock() { throw Deadlock(deadlock_message()); }

 protected:
  std::string name_;                          // for messages and reports
  std::uint64_t id_ = 0;                      // unique in this OS process
  transport transport_ = transport::automatic;
};

template <class T>
class ChannelImpl : public ChannelCore {
 public:
  using ChannelCore::ChannelCore;
  virtual std::optional<T> read_until(Deadline deadline) = 0;
  virtual bool write_until(T& value, Deadline deadline) = 0;
  /// A blocking write by a user process (Writer::write). A transport may
  /// pipeline it: return before the home took the value, leaving it
  /// unsettled for the caller (csp/detail/settle.hpp).
  virtual void write(T& value) { write_until(value, forever); }
  /// The connection this channel's pipelined writes go out on, or null.
  [[nodiscard]] virtual const Settleable* pipeline() const noexcept { return nullptr; }
  /// Buffer capacity at this home (0: rendezvous, or not a home).
  [[nodiscard]] virtual std::size_t capacity() const noexcept { return 0; }
  // Alternation primitives (lockable implementations only; called under lock).
  /// Takes a value now if one is there; `wake` gets a waiter to wake after unlock.
  virtual Poll poll_read_locked(std::optional<T>& /*out*/, Waiter*& /*wake*/) { return Poll::not_ready; }
  /// Hands `value` over now if possible (moved from only when ready).
  virtual Poll poll_write_locked(T& /*value*/, Waiter*& /*wake*/) { return Poll::not_ready; }
  virtual void enqueue_read_locked(Op& /*op*/) {}
  virtual void enqueue_write_locked(Op& /*op*/) {}
};

/// The shared-state channel of one OS process (coroutines, threads, main).
template <class T>
class InprocChannel final : public ChannelImpl<T> {
  using Base = ChannelImpl<T>;

 public:
  explicit InprocChannel(std::string name) : Base(std::move(name)) {}
  InprocChannel(std::string name, detail::ChannelBuffer<T> buffer) : Base(std::move(name)), buffer_(std::move(buffer)) {}

  std::optional<T> read_until(Deadline deadline) override {
    lock_channel();
    // capacity() first: a rendezvous channel then skips the buffer.
    if (buffer_.capacity() != 0 && !buffer_.empty() && writers_.empty() && !poisoned_) [[likely]] {
      // Fast path of a buffered stream: nobody to wake.
      std::optional<T> value(std::in_place, buffer_.pop());
      lock_.unlock();
      return value;
    }
    // Filled in place (by a waiting writer too): see read_slow_locked.
    std::optional<T> out;
    read_slow_locked(out, deadline);
    return out;
  }

  void write(T& value) override { write_until(value, forever); }
  [[nodiscard]] std::size_t capacity() const noexcept override { return buffer_.capacity(); }

  bool write_until(T& value, Deadline deadline) override {
    lock_channel();
    if (buffer_.capacity() != 0 && readers_.empty() && !buffer_.full() && !poisoned_ && !retired(Side::reader))
        [[likely]] {
      buffer_.push(std::move(value));  // fast path of a buffered stream
      lock_.unlock();
      return true;
    }
    return write_slow_locked(value, deadline);
  }

 private:
  /// lock_.lock() with the spin out of line: the hot paths stay small
  /// enough to save no registers.
  void lock_channel() noexcept {
    if (!lock_.try_lock()) [[unlikely]]
      lock_contended();
  }
  __attribute__((noinline, cold)) void lock_contended() noexcept { lock_.lock(); }

  // The slow paths are split: a hand-off to or from a waiting peer runs in
  // a small frame, and only an operation that blocks builds a waiter.
  // A read fills the caller's `out` rather than returning a std::optional:
  // GCC returns one in two registers through a stack slot, storing its
  // engaged byte and reloading it at once as part of a wider load, which
  // the CPU cannot forward from the store (that stall was ~15% of a hop).
  void read_slow_locked(std::optional<T>& out, Deadline deadline) {
    Waiter* wake = nullptr;
    switch (poll_read_impl(out, wake)) {
      case Poll::ready:
        lock_.unlock();
        if (wake) wake->wake();
        return;
      case Poll::poisoned:
        unlock_and_throw(kPoisoned, Side::writer);
      case Poll::retired:
        unlock_and_throw(kRetired, Side::writer);
      case Poll::not_ready:
        break;
    }
    read_block_locked(out, deadline);
  }

  /// Leaves `out` empty when `deadline` passes first.
  __attribute__((noinline)) void read_block_locked(std::optional<T>& out, Deadline deadline) {
    if (deadline != forever && deadline <= Clock::now()) {
      lock_.unlock();
      return;
    }
    Waiter w("read", this->name_);
    if (deadline == forever) w.guard_ = &lock_;  // selected under lock_ only
    Op op{&w, kFirstGuard, &out};
    readers_.push_back(&op);
    lock_.unlock();
    std::uintptr_t token = detail::wait(w, deadline);
    if (token == kFirstGuard) [[likely]]
      return;  // a writer handed its value straight to us
    not_completed(token, op, Side::writer);  // returns only on a timeout: `out` stays empty
  }

  bool write_slow_locked(T& value, Deadline deadline) {
    Waiter* wake = nullptr;
    switch (poll_write_impl(value, wake)) {
      case Poll::ready:
        lock_.unlock();
        if (wake) wake->wake();
        return true;
      case Poll::poisoned:
        unlock_and_throw(kPoisoned, Side::reader);
      case Poll::retired:
        unlock_and_throw(kRetired, Side::reader);
      case Poll::not_ready:
        break;
    }
    return write_block_locked(value, deadline);
  }

  __attribute__((noinline)) bool write_block_locked(T& value, Deadline deadline) {
    if (deadline != forever && deadline <= Clock::now()) {
      lock_.unlock();
      return false;
    }
    Waiter w("write", this->name_);
    if (deadline == forever) w.guard_ = &lock_;  // selected under lock_ only
    Op op{&w, kFirstGuard, &value};
    writers_.push_back(&op);
    lock_.unlock();
    std::uintptr_t token = detail::wait(w, deadline);
    if (token == kFirstGuard) [[likely]]
      return true;  // a reader took the value
    not_completed(token, op, Side::reader);
    return false;
  }

  /// Drops the lock, then throws ChannelPoisoned (kPoisoned) or
  /// ChannelRetired (kRetired) for the retired `side`.
  [[noreturn]] __attribute__((noinline, cold)) void unlock_and_throw(std::uintptr_t token, Side side) {
    lock_.unlock();
    if (token == kPoisoned) this->throw_poisoned();
    this->throw_retired(side);
  }

 public:
  Poll poll_read_locked(std::optional<T>& out, Waiter*& wake) override { return poll_read_impl(out, wake); }
  Poll poll_write_locked(T& value, Waiter*& wake) override { return poll_write_impl(value, wake); }

 private:
  __attribute__((always_inline)) Poll poll_read_impl(std::optional<T>& out, Waiter*& wake) {
    if (poisoned_) return Poll::poisoned;
    if (buffer_.capacity() != 0 && !buffer_.empty()) {
      out.emplace(buffer_.pop());
      // A writer blocked on the full buffer can now put its value in.
      while (Op* op = writers_.pop_front()) {
        if (op->waiter_->select_locked(op->token_)) {
          buffer_.push(std::move(*static_cast<T*>(op->slot_)));
          wake = op->waiter_;
          break;
        }
      }
      return Poll::ready;
    }
    while (Op* op = writers_.pop_front()) {
      if (op->waiter_->select_locked(op->token_)) {
        out.emplace(std::move(*static_cast<T*>(op->slot_)));  // direct hand-off
        wake = op->waiter_;
        return Poll::ready;
      }
    }
    return retired(Side::writer) ? Poll::retired : Poll::not_ready;
  }

  __attribute__((always_inline)) Poll poll_write_impl(T& value, Waiter*& wake) {
    if (poisoned_) return Poll::poisoned;
    if (retired(Side::reader)) return Poll::retired;
    while (Op* op = readers_.pop_front()) {
      if (op->waiter_->select_locked(op->token_)) {
        static_cast<std::optional<T>*>(op->slot_)->emplace(std::move(value));  // direct hand-off
        wake = op->waiter_;
        return Poll::ready;
      }
    }
    if (buffer_.capacity() != 0 && !buffer_.full()) {
      buffer_.push(std::move(value));
      return Poll::ready;
    }
    return Poll::not_ready;
  }


 public:
  void enqueue_read_locked(Op& op) override { readers_.push_back(&op); }
  void enqueue_write_locked(Op& op) override { writers_.push_back(&op); }
  void unlink_locked(Op& op) noexcept override {
    readers_.unlink(&op);
    writers_.unlink(&op);
  }
  [[nodiscard]] bool lockable() const noexcept override { return true; }
  void lock() noexcept override { lock_channel(); }
  void unlock() noexcept override { lock_.unlock(); }

  void join(Side side) override {
    std::lock_guard guard(lock_);
    ++count(side);
    ever(side) = true;
  }

  void leave(Side side) override {
    lock_.lock();
    if (count(side) > 0 && --count(side) == 0) {
      // The side retired: every blocked operation re-examines the channel.
      wake_all_locked(kRetired);
      return;  // unlocked by wake_all_locked
    }
    lock_.unlock();
  }

  void poison() override {
    lock_.lock();
    poisoned_ = true;
    wake_all_locked(kPoisoned);
  }
  [[nodiscard]] bool poisoned() const override {
    std::lock_guard guard(lock_);
    return poisoned_;
  }

 private:
  [[nodiscard]] bool retired(Side side) const noexcept { return ever(side) && count(side) == 0; }
  std::size_t& count(Side side) noexcept { return side == Side::reader ? readers_count_ : writers_count_; }
  [[nodiscard]] std::size_t count(Side side) const noexcept {
    return side == Side::reader ? readers_count_ : writers_count_;
  }
  bool& ever(Side side) noexcept { return side == Side::reader ? readers_ever_ : writers_ever_; }
  [[nodiscard]] bool ever(Side side) const noexcept { return side == Side::reader ? readers_ever_ : writers_ever_; }

  /// Selects every queued op with `token`, unlocks, then wakes the winners
  /// (Go's closechan: collect, unlock, wake).
  void wake_all_locked(std::uintptr_t token) {
    Op* won = nullptr;
    for (OpQueue* q : {&readers_, &writers_}) {
      while (Op* op = q->pop_front()) {
        if (op->waiter_->select_locked(token)) {
          op->next_ = won;  // reuse the link: the op is ours until we wake it
          won = op;
        }
      }
    }
    lock_.unlock();
    while (won) {
      Op* next = won->next_;
      won->waiter_->wake();
      won = next;
    }
  }

  /// After wait() ended without our op completing: unlink it, then return
  /// (timed out) or throw.
  __attribute__((noinline)) void not_completed(std::uintptr_t token, Op& op, Side other) {
    lock_.lock();
    unlink_locked(op);
    lock_.unlock();
    switch (token) {
      case kTimedOut:
        return;
      case kPoisoned:
        this->throw_poisoned();
      case kRetired:
        this->throw_retired(other);
      case kDeadlock:
        this->throw_deadlock();
      default:
        throw Error("csp: channel '" + this->name_ + "': unexpected wake-up token " + std::to_string(token));
    }
  }

  mutable SpinLock lock_;                  // guards every member below
  OpQueue readers_;                        // blocked readers (and selects' input guards)
  OpQueue writers_;                        // blocked writers (and selects' output guards)
  detail::ChannelBuffer<T> buffer_;        // capacity 0: rendezvous
  std::size_t readers_count_ = 0;          // reader ends that have not left
  std::size_t writers_count_ = 0;          // writer ends that have not left
  bool readers_ever_ = false;              // a reader end ever joined
  bool writers_ever_ = false;              // a writer end ever joined
  bool poisoned_ = false;
};

}  // namespace detail
}  // namespace csp
