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
// - slow_ summarises the rare states the buffered fast paths must leave to
//   the slow paths, one bit each (poisoned_, the reader side retired, a
//   borrower_ or ghost_ room, a parked lend_waiter_), so a fast path tests
//   one byte for them. Whoever changes one of those fields updates its bit
//   at once, so each bit is set exactly while its state holds.
//
// Lending (read-ahead to one remote reader, csp/transport/wire.hpp):
// - Only a FIFO-buffered channel lends (lendable()). A rendezvous channel
//   (capacity 0) never has a borrower_, ghost_ or outside_ room, nor a
//   parked lending executor, so its slow paths skip those checks.
// - A FIFO-buffered channel may lend values to one Borrower (the server of
//   a remote reader's connection): they leave buffer_ for lent_, oldest
//   first, and are sent ahead. The queue a reader sees is lent_ followed by
//   buffer_: only the borrower takes from it while lent_ is non-empty.
// - Capacity counts lent values and `ghost_` (values a revoked borrower
//   consumed whose room is not yet refilled from waiting writers):
//   buffer_.size() + outside_ <= capacity, outside_ == lent_.size() + ghost_.
//   So writers' back-pressure does not change, and values given back always
//   fit at the front of the ring.
// - The borrower's shared word (lend_word) decides, by CAS, which lent
//   values the remote consumed: the remote takes value `index` of `epoch`
//   only while the word says so; revoking bumps the epoch, so every value
//   not taken by then comes back
//   (to the front of buffer_, in order) and can never be taken by the
//   remote afterwards. Revoking needs no answer from the remote.
// - Any other reader (a read, a poll, a blocked op, a reader joining)
//   revokes first, so a lent value never waits in a remote that is not
//   reading while another reader wants it, and FIFO order holds across
//   readers. poison() revokes too: nothing lent is consumed after it.
// - lend_waiter_ is the borrower's lending executor parked for values:
//   while set, writes take the slow path, which wakes it.
//   lend_room_waiter_ is the same executor parked for room in its window
//   (values are buffered): CONSUMED hints, revokes, poison and retire wake it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include <csp/buffer.hpp>
#include <csp/detail/settle.hpp>
#include <csp/detail/spin_lock.hpp>
#include <csp/detail/wait.hpp>
#include <csp/error.hpp>
#include <csp/runtime.hpp>

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

// ---- lending (read-ahead to a remote reader) ---------------------------------------

/// The word a home channel and one remote reader share (in memory both
/// map) to agree which lent values the remote consumed: bit 63 "hint
/// wanted", epoch in bits 62..32, taken (values the remote consumed so
/// far, mod 2^16) in 15..0; bits 31..16 are zero. Only the home changes
/// the epoch and sets the hint bit; only the remote changes taken, and
/// each take clears the hint bit (the remote then sends a CONSUMED hint at
/// once: the home has a writer or its lending executor waiting for room).
/// Each change is a CAS on the whole word. Lending itself does not write
/// the word (the epoch and the index in each LEND frame say what may be
/// taken), so while the remote takes and nobody at the home waits for
/// room, the word's cache line stays with the remote.
namespace lend_word {
inline constexpr std::uint64_t kWantHint = std::uint64_t{1} << 63;
inline constexpr std::uint32_t kMaxEpoch = 0x7FFFFFFF;
inline std::uint32_t epoch(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32) & kMaxEpoch; }
inline std::uint16_t taken(std::uint64_t w) noexcept { return static_cast<std::uint16_t>(w); }
inline bool wants_hint(std::uint64_t w) noexcept { return (w & kWantHint) != 0; }
/// A word without the hint bit.
inline std::uint64_t make(std::uint32_t epoch, std::uint16_t taken) noexcept {
  return (std::uint64_t{epoch & kMaxEpoch} << 32) | taken;
}
inline std::uint32_t next_epoch(std::uint32_t epoch) noexcept { return epoch >= kMaxEpoch ? 1 : epoch + 1; }
/// Home: ends the current epoch; whatever was lent and not taken can no
/// longer be taken. Returns the word as it was just before.
inline std::uint64_t revoke(std::atomic<std::uint64_t>& word) noexcept {
  std::uint64_t w = word.load(std::memory_order_acquire);
  // SYNC POINT: pairs with the remote's CAS in take (RemoteChannel): the
  // first of the two wins, so a value is either taken or given back.
  while (!word.compare_exchange_weak(w, make(next_epoch(epoch(w)), taken(w)), std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
  }
  return w;
}
}  // namespace lend_word

/// Most values lent to a remote reader at once (the index space is 2^16).
inline constexpr std::size_t kMaxLent = 1024;

/// A remote reader values can be lent to: the home's server of its
/// connection. The lending channel calls encode_lent under its lock.
template <class T>
class Borrower {
 public:
  explicit Borrower(std::atomic<std::uint64_t>* word) noexcept : lend_word_(word) {}
  virtual ~Borrower() = default;
  Borrower(const Borrower&) = delete;
  Borrower& operator=(const Borrower&) = delete;
  /// Under the channel's lock: prepares `value`, lent as `index` of
  /// `epoch`, for sending once the lock is dropped; false when the batch is
  /// big enough. Throwing (a value that cannot be sent) undoes the batch.
  virtual bool encode_lent(const T& value, std::uint32_t epoch, std::uint16_t index) = 0;

  std::atomic<std::uint64_t>* const lend_word_;  // shared with the remote (lend_word)
  // Guarded by the lending channel's lock:
  bool lend_closed_ = false;                     // never attach again
  std::uint32_t lend_epoch_ = 0;                 // the epoch of the latest attach
};

/// What one lend() did.
struct LendResult {
  enum Kind : std::uint8_t {
    lent,      // values were encoded (send them)
    empty,     // nothing to lend now: the caller parks on its waiter, which the channel wakes
    detached,  // this borrower is not (or no longer) lent to: revoked
    poisoned,  // the channel is poisoned (and revoked)
    drained,   // the writers retired and nothing is buffered: nothing more will come
  };
  Kind kind = detached;
  std::uint32_t epoch = 0;  // the epoch lent in, or (detached, poisoned) the last one lent in
};

template <class T>
class ChannelImpl : public ChannelCore {
 public:
  using ChannelCore::ChannelCore;
  // Lending (only a FIFO-buffered home channel supports it; see the file comment).
  /// True if values can be lent to a remote reader.
  [[nodiscard]] virtual bool lendable() const noexcept { return false; }
  /// Starts lending to `b` if it may be now (no other reader waits or is a
  /// member, not poisoned); revokes any other borrower first. Returns the
  /// new epoch, or 0 when not lending.
  virtual std::uint32_t lend_attach(Borrower<T>& /*b*/) { return 0; }
  /// Lends what is buffered (up to the window) to `b`, encoding it through
  /// b.encode_lent; with nothing to lend, registers `park` to be woken
  /// (try_select(kWoken)) when that may have changed.
  virtual LendResult lend(Borrower<T>& /*b*/, Waiter& /*park*/) { return {}; }
  /// `b`'s remote reported consumption: frees capacity it took.
  virtual void lend_consumed(Borrower<T>& /*b*/) {}
  /// Gives back what `b` has not consumed and stops lending to it; `final`:
  /// never again (the connection ends). Wakes b's parked executor.
  virtual void lend_revoke(Borrower<T>& /*b*/, bool /*final*/) {}
  virtual std::optional<T> read_until(Deadline deadline) = 0;
  virtual bool write_until(T& value, Deadline deadline) = 0;
  /// A blocking write by a user process (Writer::write). A transport may
  /// pipeline it: return before the home took the value, leaving it
  /// unsettled for the caller (csp/detail/settle.hpp).
  virtual void write(T& value) { write_until(value, forever); }
  /// Buffers *values[0], ..., *values[n - 1] (all engaged) in order, as
  /// far as each would be buffered at once by write_until(value, now)
  /// without waking anyone (room, nobody waiting, not poisoned or retired);
  /// returns how many went (moved from) and leaves the rest untouched. For
  /// a home server's pipelined writes of one read: one lock for the batch.
  /// 0: not supported here.
  virtual std::size_t buffer_now(std::optional<T>* /*values*/, std::size_t /*n*/) { return 0; }
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
    if (buffer_.capacity() != 0 && !buffer_.empty() && writers_.empty() && (slow_ & kReadSlow) == 0) [[likely]] {
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

  std::size_t buffer_now(std::optional<T>* values, std::size_t n) override {
    lock_channel();
    std::size_t done = 0;
    // The fast path of write_until, for as many values as there is room.
    if (buffer_.capacity() != 0 && readers_.empty() && buffer_.size() + outside_ < buffer_.capacity() &&
        (slow_ & kWriteSlow) == 0) {
      done = std::min(n, buffer_.capacity() - (buffer_.size() + outside_));
      for (std::size_t i = 0; i < done; ++i) buffer_.push(std::move(*values[i]));
    }
    lock_.unlock();
    return done;
  }

  bool write_until(T& value, Deadline deadline) override {
    lock_channel();
    if (buffer_.capacity() != 0 && readers_.empty() && buffer_.size() + outside_ < buffer_.capacity() &&
        (slow_ & kWriteSlow) == 0) [[likely]] {
      buffer_.push(std::move(value));  // fast path of a buffered stream
      const bool pass = (slow_ & kBorrowedBit) != 0 && buffer_.size() == lend_pass_at();
      lock_.unlock();
      if (pass) [[unlikely]]
        pass_to_lender();
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

  // While lending, a coroutine writer lets the lending executor run once
  // half the window waits unlent (see "Lending" above): on one worker the
  // executor otherwise runs only when the writer blocks on a full window,
  // so writer, executor and remote reader take turns with the whole window
  // instead of overlapping (a 64 B shm stream through 64 slots, parent to
  // child: medians of 8 interleaved runs 8.75 -> 9.95 M msg/s).
  [[nodiscard]] std::size_t lend_pass_at() const noexcept {
    return std::max<std::size_t>(1, std::min(buffer_.capacity(), kMaxLent) / 2);
  }
  __attribute__((noinline)) static void pass_to_lender() {
    if (detail::in_coroutine()) csp::yield();
  }

  // The slow paths are split: a hand-off to or from a waiting peer runs in
  // a small frame, and only an operation that blocks builds a waiter.
  // A read fills the caller's `out` rather than returning a std::optional:
  // GCC returns one in two registers through a stack slot, storing its
  // engaged byte and reloading it at once as part of a wider load, which
  // the CPU cannot forward from the store (that stall was ~15% of a hop).
  //
  // A rendezvous channel (capacity 0) never buffers or lends (lendable()
  // needs a buffer), so its slow paths skip every buffer and lending check;
  // a buffered channel's slow paths run in their own frames, so the calls
  // that settle lending cost the rendezvous hand-off no saved registers.
  // The slow paths stay out of line so that read_until and write_until
  // stay small enough to inline where the channel's type is known.
  __attribute__((noinline)) void read_slow_locked(std::optional<T>& out, Deadline deadline) {
    if (buffer_.capacity() != 0) return read_slow_buffered_locked(out, deadline);
    Waiter* wake = nullptr;
    const Poll poll = poll_read_impl<false>(out, wake);
    read_finish_locked(poll, wake, out, deadline);
  }

  __attribute__((noinline)) void read_slow_buffered_locked(std::optional<T>& out, Deadline deadline) {
    if ((slow_ & kBorrowedBit) != 0) [[unlikely]]  // a borrower_ or ghost_ room
      settle_lending_locked();
    Waiter* wake = nullptr;
    const Poll poll = poll_read_impl<true>(out, wake);
    read_finish_locked(poll, wake, out, deadline);
  }

  /// After a read's poll: wakes the peer it took from, throws, or blocks.
  __attribute__((always_inline)) void read_finish_locked(Poll poll, Waiter* wake, std::optional<T>& out,
                                                         Deadline deadline) {
    switch (poll) {
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
    // Named after construction: the constructor calls current_parker(),
    // and the name's pointers, loaded after that call, need no register
    // kept across it (three fewer saves and restores per blocking read).
    Waiter w;
    w.what_ = "read";
    w.object_ = this->name_;
    if (deadline == forever) w.guard_ = &lock_;  // selected under lock_ only
    Op op{&w, kFirstGuard, &out};
    readers_.push_back(&op);
    lock_.unlock();
    std::uintptr_t token = detail::wait(w, deadline);
    if (token == kFirstGuard) [[likely]]
      return;  // a writer handed its value straight to us
    not_completed(token, op, Side::writer);  // returns only on a timeout: `out` stays empty
  }

  __attribute__((noinline)) bool write_slow_locked(T& value, Deadline deadline) {
    if (buffer_.capacity() != 0) return write_slow_buffered_locked(value, deadline);
    Waiter* wake = nullptr;
    const Poll poll = poll_write_impl<false>(value, wake);
    return write_finish_locked(poll, wake, value, deadline);
  }

  __attribute__((noinline)) bool write_slow_buffered_locked(T& value, Deadline deadline) {
    if (ghost_ != 0 || (borrower_ != nullptr && buffer_.size() + outside_ >= buffer_.capacity())) [[unlikely]]
      settle_lending_for_write_locked();
    Waiter* wake = nullptr;
    const Poll poll = poll_write_impl<true>(value, wake);
    return write_finish_locked(poll, wake, value, deadline);
  }

  /// After a write's poll: wakes the peer it gave to, throws, or blocks.
  __attribute__((always_inline)) bool write_finish_locked(Poll poll, Waiter* wake, T& value, Deadline deadline) {
    switch (poll) {
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
    // Named after construction: the constructor calls current_parker(),
    // and the name's pointers, loaded after that call, need no register
    // kept across it (three fewer saves and restores per blocking write).
    Waiter w;
    w.what_ = "write";
    w.object_ = this->name_;
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
  // kBuffered false: only for a rendezvous channel (capacity 0), which never
  // buffers or lends (lendable() needs a buffer), so its hand-off skips
  // every buffer and lending check.
  template <bool kBuffered = true>
  __attribute__((always_inline)) Poll poll_read_impl(std::optional<T>& out, Waiter*& wake) {
    if (poisoned_) return Poll::poisoned;
    // Another reader: what is lent comes back first (its room stays ghost_
    // here, where only one waiter can be woken; settle_lending_locked frees it).
    if (kBuffered && borrower_ != nullptr) [[unlikely]] {
      revoke_locked(nullptr);
      // Its executor must tell the remote (LEND_END) even if nothing else
      // happens. Woken under lock_ on this rare path (a poll at the home
      // while lending): unpark() never switches, and the executor parks
      // without lock_.
      if (Waiter* lender = take_lend_waiter_locked()) lender->wake();
    }
    if (kBuffered && buffer_.capacity() != 0 && !buffer_.empty()) {
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

  template <bool kBuffered = true>
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
    if (!kBuffered) return Poll::not_ready;
    if (buffer_.capacity() != 0 && buffer_.size() + outside_ >= buffer_.capacity() && borrower_ != nullptr &&
        writers_.empty()) [[unlikely]] {
      WakeList none;  // with no writer waiting, freeing room wakes nobody
      took_or_asked_hint_locked(none);
    }
    if (buffer_.capacity() != 0 && buffer_.size() + outside_ < buffer_.capacity()) {
      buffer_.push(std::move(value));
      wake = take_value_waiter_locked();  // a lending executor waits for values
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
    lock_.lock();
    ++count(side);
    ever(side) = true;
    note_readers_retired_locked();
    if (side == Side::reader && borrower_ != nullptr) {  // a second reader: nothing stays lent
      WakeList wakes;
      revoke_locked(&wakes);
      lock_.unlock();
      wakes.wake();
      return;
    }
    lock_.unlock();
  }

  void leave(Side side) override {
    lock_.lock();
    if (count(side) > 0 && --count(side) == 0) {
      note_readers_retired_locked();
      // The side retired: every blocked operation re-examines the channel.
      wake_all_locked(kRetired);
      return;  // unlocked by wake_all_locked
    }
    lock_.unlock();
  }

  void poison() override {
    lock_.lock();
    poisoned_ = true;
    slow_ |= kPoisonedBit;
    if (borrower_ != nullptr) revoke_locked(nullptr);  // nothing lent is consumed after poison
    wake_all_locked(kPoisoned);
  }
  [[nodiscard]] bool poisoned() const override {
    std::lock_guard guard(lock_);
    return poisoned_;
  }

 private:
  [[nodiscard]] bool retired(Side side) const noexcept { return ever(side) && count(side) == 0; }
  /// After a reader joined or left: kReadersRetiredBit follows retired(Side::reader).
  void note_readers_retired_locked() noexcept {
    if (retired(Side::reader)) slow_ |= kReadersRetiredBit; else slow_ &= ~kReadersRetiredBit;
  }
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
    Waiter* lender = take_lend_waiter_locked();
    lock_.unlock();
    while (won) {
      Op* next = won->next_;
      won->waiter_->wake();
      won = next;
    }
    if (lender) lender->wake();
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

  // ---- lending (see the file comment) ----

  /// Waiters to wake once lock_ is dropped: writers moved into the buffer
  /// (chained through Op::next_, as in wake_all_locked) and lending executors.
  struct WakeList {
    Op* writers = nullptr;
    Waiter* lenders[2] = {nullptr, nullptr};
    void add_lender(Waiter* w) noexcept {
      if (!w) return;
      if (!lenders[0]) lenders[0] = w; else lenders[1] = w;
    }
    void wake() noexcept {
      while (writers) {
        Op* next = writers->next_;
        writers->waiter_->wake();
        writers = next;
      }
      for (Waiter* w : lenders)
        if (w) w->wake();
    }
  };

  /// Takes the parked lending executor's waiter (parked for values or for
  /// room), selected: the caller wakes it once lock_ is dropped (null if none).
  Waiter* take_lend_waiter_locked() noexcept {
    Waiter* w = std::exchange(lend_waiter_, nullptr);
    slow_ &= ~kLendWaiterBit;
    if (!w) w = std::exchange(lend_room_waiter_, nullptr);
    return w && w->try_select(kWoken) ? w : nullptr;
  }
  /// The same for a writer that buffered a value: only an executor parked
  /// for values needs it (one parked for room waits for the remote).
  Waiter* take_value_waiter_locked() noexcept {
    Waiter* w = std::exchange(lend_waiter_, nullptr);
    if (!w) return nullptr;
    slow_ &= ~kLendWaiterBit;
    return w->try_select(kWoken) ? w : nullptr;
  }

 public:
  [[nodiscard]] bool lendable() const noexcept override { return buffer_.capacity() != 0 && buffer_.fifo(); }

  std::uint32_t lend_attach(Borrower<T>& b) override {
    WakeList wakes;
    lock_channel();
    std::uint32_t epoch = 0;
    if (b.lend_closed_ || !lendable() || poisoned_ || readers_count_ > 1 || !readers_.empty() ||
        (retired(Side::writer) && buffer_.empty())) {
      if (borrower_ == &b) revoke_locked(&wakes);
    } else if (borrower_ == &b) {
      epoch = lent_epoch_;
    } else {
      if (borrower_ != nullptr) revoke_locked(&wakes);
      if (ghost_ != 0) reclaim_ghost_locked(wakes);
      // A fresh epoch: anything the remote still holds from before is void.
      const std::uint64_t was = lend_word::revoke(*b.lend_word_);
      epoch = lend_word::next_epoch(lend_word::epoch(was));
      lent_epoch_ = epoch;
      b.lend_epoch_ = epoch;
      lent_base_ = lend_word::taken(was);
      borrower_ = &b;
      slow_ |= kBorrowedBit;
      wakes.add_lender(take_lend_waiter_locked());  // it may lend what is buffered
    }
    lock_.unlock();
    wakes.wake();
    return epoch;
  }

  LendResult lend(Borrower<T>& b, Waiter& park) override {
    WakeList wakes;
    lock_channel();
    LendResult result;
    try {
      result = lend_locked(b, park, wakes);
    } catch (...) {
      lock_.unlock();
      wakes.wake();
      throw;
    }
    lock_.unlock();
    wakes.wake();
    return result;
  }

  void lend_consumed(Borrower<T>& b) override {
    WakeList wakes;
    lock_channel();
    if (borrower_ == &b) {
      take_consumed_locked(wakes);
      wakes.add_lender(take_lend_waiter_locked());  // room in its window
    }
    lock_.unlock();
    wakes.wake();
  }

  void lend_revoke(Borrower<T>& b, bool final) override {
    WakeList wakes;
    lock_channel();
    if (final) b.lend_closed_ = true;
    if (borrower_ == &b) revoke_locked(&wakes);
    wakes.add_lender(take_lend_waiter_locked());  // b's executor re-checks (others harmlessly)
    lock_.unlock();
    wakes.wake();
  }

 private:
  LendResult lend_locked(Borrower<T>& b, Waiter& park, WakeList& wakes) {
    if (borrower_ != &b) return {poisoned_ ? LendResult::poisoned : LendResult::detached, b.lend_epoch_};
    if (poisoned_) {
      revoke_locked(&wakes);
      return {LendResult::poisoned, b.lend_epoch_};
    }
    if (!readers_.empty() || readers_count_ > 1) {  // another reader: it goes first
      revoke_locked(&wakes);
      return {LendResult::detached, b.lend_epoch_};
    }
    const std::size_t window = std::min(buffer_.capacity(), kMaxLent);
    // The word is read only when the window is full: reading it takes its
    // cache line from the remote, whose next take then waits for it.
    if (lent_.size() >= window) take_consumed_locked(wakes);
    const std::size_t n = std::min(buffer_.size(), window > lent_.size() ? window - lent_.size() : 0);
    if (n == 0) {
      if (buffer_.empty() && retired(Side::writer)) return {LendResult::drained, lent_epoch_};
      if (!buffer_.empty() && took_or_asked_hint_locked(wakes))  // a full window: the remote's takes free it
        return lend_locked(b, park, wakes);
      // One executor parks at a time (another one re-checks). Parked for
      // room (a full window), writes need not wake it: the remote's takes do.
      if (lend_waiter_ != &park && lend_room_waiter_ != &park) wakes.add_lender(take_lend_waiter_locked());
      lend_waiter_ = lend_room_waiter_ = nullptr;
      (buffer_.empty() ? lend_waiter_ : lend_room_waiter_) = &park;
      if (lend_waiter_ != nullptr) slow_ |= kLendWaiterBit; else slow_ &= ~kLendWaiterBit;
      return {LendResult::empty, lent_epoch_};
    }
    const auto first = static_cast<std::uint16_t>(lent_base_ + lent_.size());
    std::size_t done = 0;
    try {
      bool more = true;
      while (more && done < n) {
        T value = buffer_.pop();
        try {
          more = b.encode_lent(value, lent_epoch_, static_cast<std::uint16_t>(first + done));
        } catch (...) {
          buffer_.push_front(std::move(value));
          throw;
        }
        lent_.push_back(std::move(value));
        ++done;
      }
    } catch (...) {
      for (; done > 0; --done) {  // undo the batch: nothing of it was sent
        buffer_.push_front(std::move(lent_.back()));
        lent_.pop_back();
      }
      throw;
    }
    outside_ += done;
    return {LendResult::lent, lent_epoch_};
  }

  /// With the capacity (or the lending window) full of values lent to
  /// borrower_: true if its remote took some since we last looked (their
  /// room is now free), else asks it for a CONSUMED hint on its next take.
  bool took_or_asked_hint_locked(WakeList& wakes) {
    std::atomic<std::uint64_t>& word = *borrower_->lend_word_;
    std::uint64_t w = word.load(std::memory_order_acquire);
    for (;;) {
      if (lend_word::taken(w) != lent_base_) {
        take_consumed_locked(wakes);
        return true;
      }
      if (lend_word::wants_hint(w)) return false;
      // SYNC POINT: pairs with the remote's take CAS, which clears the bit
      // and then sends CONSUMED; a take between our load and this CAS makes
      // it fail, and we see that take above.
      if (word.compare_exchange_weak(w, w | lend_word::kWantHint, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
        return false;
    }
  }

  /// Before a write finds the buffer full: frees the room of values the
  /// remote took (or asks it to hint when it takes one), waking writers
  /// that get room; drops and retakes lock_.
  __attribute__((noinline, cold)) void settle_lending_for_write_locked() {
    WakeList wakes;
    if (ghost_ != 0) reclaim_ghost_locked(wakes);
    if (borrower_ != nullptr && buffer_.size() + outside_ >= buffer_.capacity()) took_or_asked_hint_locked(wakes);
    lock_.unlock();
    wakes.wake();
    lock_channel();
  }

  /// Drops what the borrower's remote took (per the word) from lent_.
  void take_consumed_locked(WakeList& wakes) {
    const std::uint16_t taken = lend_word::taken(borrower_->lend_word_->load(std::memory_order_acquire));
    const std::size_t consumed = std::min<std::size_t>(static_cast<std::uint16_t>(taken - lent_base_), lent_.size());
    if (consumed == 0) return;
    lent_.erase(lent_.begin(), lent_.begin() + static_cast<std::ptrdiff_t>(consumed));
    lent_base_ = static_cast<std::uint16_t>(lent_base_ + consumed);
    outside_ -= consumed;
    refill_locked(wakes);
  }

  /// Ends lending to borrower_: what its remote did not take goes back to
  /// the front of the buffer, in order. With `wakes`, the room of what it
  /// took goes to waiting writers at once; without, it stays ghost_.
  void revoke_locked(WakeList* wakes) {
    Borrower<T>* b = std::exchange(borrower_, nullptr);
    const std::uint16_t taken = lend_word::taken(lend_word::revoke(*b->lend_word_));
    const std::size_t consumed = std::min<std::size_t>(static_cast<std::uint16_t>(taken - lent_base_), lent_.size());
    lent_.erase(lent_.begin(), lent_.begin() + static_cast<std::ptrdiff_t>(consumed));
    outside_ -= lent_.size() + consumed;
    ghost_ += consumed;
    outside_ += consumed;
    if (ghost_ == 0) slow_ &= ~kBorrowedBit;  // else the ghost_ room keeps it set
    while (!lent_.empty()) {
      buffer_.push_front(std::move(lent_.back()));
      lent_.pop_back();
    }
    lent_base_ = taken;
    if (wakes) {
      reclaim_ghost_locked(*wakes);
      wakes->add_lender(take_lend_waiter_locked());  // it tells its remote lending ended
    }
  }

  void reclaim_ghost_locked(WakeList& wakes) {
    outside_ -= ghost_;
    ghost_ = 0;
    if (borrower_ == nullptr) slow_ &= ~kBorrowedBit;
    refill_locked(wakes);
  }

  /// Moves waiting writers' values into free room.
  void refill_locked(WakeList& wakes) {
    while (buffer_.size() + outside_ < buffer_.capacity()) {
      Op* op = writers_.pop_front();
      if (!op) break;
      if (op->waiter_->select_locked(op->token_)) {
        buffer_.push(std::move(*static_cast<T*>(op->slot_)));
        op->next_ = wakes.writers;
        wakes.writers = op;
      }
    }
  }

  /// Revokes and frees ghost room with every wake-up it needs; drops and
  /// retakes lock_ (the caller re-examines the channel after).
  __attribute__((noinline, cold)) void settle_lending_locked() {
    WakeList wakes;
    if (borrower_ != nullptr) revoke_locked(&wakes);
    if (ghost_ != 0) reclaim_ghost_locked(wakes);
    lock_.unlock();
    wakes.wake();
    lock_channel();
  }

  mutable SpinLock lock_;                  // guards every member below
  // Bits of slow_: each set exactly while its state holds (file comment).
  static constexpr std::uint8_t kPoisonedBit = 1;        // poisoned_
  static constexpr std::uint8_t kReadersRetiredBit = 2;  // retired(Side::reader)
  static constexpr std::uint8_t kBorrowedBit = 4;        // borrower_ != nullptr || ghost_ != 0
  static constexpr std::uint8_t kLendWaiterBit = 8;      // lend_waiter_ != nullptr
  static constexpr std::uint8_t kReadSlow = kPoisonedBit | kBorrowedBit;  // a read must settle lending
  static constexpr std::uint8_t kWriteSlow = kPoisonedBit | kReadersRetiredBit | kLendWaiterBit;
  std::uint8_t slow_ = 0;                  // why the buffered fast paths must not run (bits above); beside lock_
  OpQueue readers_;                        // blocked readers (and selects' input guards)
  OpQueue writers_;                        // blocked writers (and selects' output guards)
  detail::ChannelBuffer<T> buffer_;        // capacity 0: rendezvous
  std::size_t readers_count_ = 0;          // reader ends that have not left
  std::size_t writers_count_ = 0;          // writer ends that have not left
  bool readers_ever_ = false;              // a reader end ever joined
  bool writers_ever_ = false;              // a writer end ever joined
  bool poisoned_ = false;
  // Lending (see the file comment).
  Borrower<T>* borrower_ = nullptr;        // the remote reader lent to, or null
  std::deque<T> lent_;                     // values lent to borrower_ and not known taken, oldest first
  std::uint16_t lent_base_ = 0;            // index (mod 2^16) of lent_.front()
  std::uint32_t lent_epoch_ = 0;           // borrower_'s epoch
  std::size_t ghost_ = 0;                  // room of values a revoked borrower took, not yet refilled
  std::size_t outside_ = 0;                // lent_.size() + ghost_: counted against the capacity
  Waiter* lend_waiter_ = nullptr;          // a lending executor parked for values (writes wake it)
  Waiter* lend_room_waiter_ = nullptr;     // or parked for room in its window (the remote's takes wake it)
};

}  // namespace detail
}  // namespace csp
