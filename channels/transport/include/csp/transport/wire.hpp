// csp/transport/wire.hpp: the channel protocol that runs over a ByteStream
// between a remote end (RemoteChannel) and the channel's home (ChannelServer).
// Frames and the handshake are those of csp/detail/frame.hpp; this file says
// how the transports use them.
//
// One connection carries one channel (frame field `channel` is 0). The
// remote side sends requests, each with a fresh `sequence`; the home answers
// each with one reply carrying the same sequence, whose `flags` byte is a
// Status. Requests:
//
//   HELLO      first frame. flags: kHelloNoAck (fork links) = do not answer
//              HELLO_ACK, only HELLO_NAK on a mismatch. Answer: HELLO_ACK or
//              HELLO_NAK(reason); after a NAK the home closes.
//   WRITE      payload u64 timeout, then the encoded value. The home writes
//              it with that timeout (write_until). Reply WRITE_ACK: ok (a
//              reader took it or it was buffered), timeout (not sent, the
//              writer keeps it), poisoned, retired, error(message). When
//              the home channel is buffered, an ok WRITE_ACK has flag
//              kAckBuffered and payload u64 capacity: the remote may then
//              pipeline its blocking writes.
//              flags kWritePipelined: a pipelined write (timeout forever).
//              The remote did not wait for it; the home performs the
//              pipelined writes of a connection one after another, in
//              order, and answers each (WRITE_ACK, in that order). A remote
//              has at most kMaxPipelined of them unanswered; more is a
//              protocol error. Answers ok may come batched: one WRITE_ACK
//              with flag kAckBatch, payload u64 n, and the sequence of the
//              last of the n oldest unanswered pipelined writes it answers.
//   READ_REQ   payload u64 timeout. Reply READ_DATA: ok + encoded value,
//              timeout, poisoned, retired, error(message).
//              flags kReadAhead: the remote can take lent values (it has a
//              lend word, below); the home may then start lending to it: the
//              READ_DATA (ok or timeout) has flag kLendOn and its payload
//              starts with u64 epoch (before the value, if any).
//   POISON     poisons the home channel. Reply POISON ok.
//   RETIRE     membership: flags kMemberWriter (side), kMemberJoin (join,
//              else leave). A remote process shows as at most one member per
//              side: it joins when its first end of a side is made and
//              leaves when its last one goes. Reply RETIRE ok.
//   CLOSE      orderly end: whatever the remote still holds leaves its side.
//              Reply CLOSE ok, then the home closes.
//   CONSUMED   (no reply) the remote took lent values: a hint that the home
//              re-reads the lend word (below) and frees their room.
// The home also sends, unasked (sequence 0):
//   LEND       flag kLendBatch (always set); payload u32 epoch, u32 index
//              (< 2^16) of the first value, then one or more values lent
//              ahead to the remote reader, each u32 length and that many
//              bytes of its encoding; the i-th has index first + i (mod 2^16).
//              One frame per batch: the remote's per-frame work (header,
//              dispatch, locks) was a fifth of a small lent value's cost.
//   LEND_END   payload u32 epoch: the home stopped lending in that epoch.
//
// Pipelining: a remote pipelines blocking writes (Writer::write) to a
// buffered home only; the write returns once sent, and the writing process
// settles it (waits for its WRITE_ACK) before its next observable operation
// (csp/detail/settle.hpp), so causality holds across channels. A buffered
// channel of capacity C can thus hold C values at its home plus at most
// min(C, kMaxPipelined) on their way per remote connection.
//
// Reading from a remote end. Without read-ahead (unbuffered or priority
// buffered channels, connections made by address, CSP_READ_AHEAD=0): one
// READ_REQ per read; the home's executor takes the value (read_until with
// the remote's timeout) and sends it; the remote waits for that answer even
// past its own deadline, so a value taken for a read is returned by that
// read, and a read that timed out took nothing.
//
// Read-ahead (a FIFO-buffered home, os_process links). The home lends
// buffered values to one remote reader before it asks: LEND frames, sent by
// a lending executor of the connection as soon as values are buffered, so a
// stream from the home to a child costs about one write of the stream per
// batch of values instead of a round trip per value (csp-bench `stream`).
// Lent values are not gone from the channel:
// - The lend word. Each os_process link has a 64-bit word in memory the
//   parent and the child share (an anonymous shared mapping made before the
//   fork, acquire_lend_word): epoch | taken (channel_impl.hpp, lend_word).
//   The remote takes a received value (epoch e, index i) only by a CAS
//   that finds epoch e and taken == i, and sets taken = i + 1. The home
//   revokes by a CAS that bumps the epoch. Lending does not touch the word
//   (a LEND is sent only after its value entered lent_, under the
//   channel's lock, so a revoke always gives back whatever was not taken).
//   Whichever CAS comes first decides, so every lent value is either taken
//   by the remote (returned by its read) or given back to the home, never
//   both: exactly once, even when the child is killed (SIGKILL) at any
//   point. (So there is no at-least-once edge: a value whose take the
//   child won is delivered to that child and, as before read-ahead, lost
//   with it only if it dies inside that read before returning it; a value
//   received but not taken comes back.)
// - Capacity: the home counts lent values against the buffer until the
//   remote took them, so writers' back-pressure is that of the buffer. A
//   writer (or the lending executor) that finds it full reads the word
//   (values taken since free their room at once) and otherwise sets the
//   word's hint bit; the remote's next take clears the bit and sends
//   CONSUMED at once, which wakes the home to free that room. So a take
//   frees room as a read would, even if the child then blocks elsewhere.
//   Otherwise the remote sends CONSUMED every kConsumedHint takes and
//   before it waits. At most min(capacity, kMaxLent) values are lent at once.
// - Order and other readers: a home channel lends to one connection at a
//   time, and only while no other reader is a member or waiting
//   (lend_attach). Any other reader (a read, poll or select at the home, a
//   READ_REQ of another connection, a reader end joining) revokes first:
//   the values the remote did not take return to the front of the buffer
//   in order (they always fit: they were counted against the capacity), and
//   that reader goes on at once. So a lent value never waits in a remote
//   that is not reading while another reader waits, and FIFO order holds
//   across readers as if the remote had read them when it took them.
//   Revoking needs no answer from the remote (it may be blocked anywhere).
// - The remote: values arrive into a queue of the RemoteChannel, and a read
//   takes the front one (CAS; a value of a revoked epoch is dropped). With
//   an empty queue, a blocking read waits for LEND frames while the home
//   lends to it (kLendOn seen, no LEND_END for that epoch), else it sends
//   READ_REQ(kReadAhead). A READ_REQ from the connection being lent to
//   revokes at the home before its read, so a timed read or a poll
//   (try_read, alternation) gets the oldest value; it then restarts
//   lending (kLendOn). A select takes a value from the queue only by the
//   take that returns it to the select, so a fired guard never loses one.
// - Poison: the home's poison() revokes under the channel lock, so nothing
//   lent is taken after it; the remote then drops what it holds and its
//   next READ_REQ is answered poisoned.
// - Writer retirement: the remote takes what it holds; the lending
//   executor sends LEND_END once nothing is buffered; the remote's next
//   READ_REQ drains the home's buffer (given-back values included) and is
//   then answered retired.
// - The remote's reader side leaving (RETIRE leave, CLOSE) or the
//   connection ending: the home revokes first (the values come back), then
//   the ends leave.
// - Many processes and threads of the child may read one RemoteChannel:
//   the queue is locked, and each take is one CAS.
//
// Timeouts travel as u64 nanoseconds relative to receipt (0 = now, all ones
// = forever), so the two ends need no common clock. A remote operation
// returns only once the home replied, so rendezvous holds end to end: a
// remote write returns when a reader (anywhere) has taken the value.
//
// A connection that ends without CLOSE (peer died, stream broken) while the
// peer still held ends of the channel or had operations in progress poisons
// the home channel: otherwise a party waiting for the vanished peer would
// wait forever. A malformed frame (TransportError) drops the connection
// with a HELLO_NAK carrying the reason; ends the peer held then leave.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <csp/codec.hpp>
#include <csp/detail/frame.hpp>
#include <csp/detail/settle.hpp>
#include <csp/detail/spawn.hpp>
#include <csp/detail/spin_lock.hpp>
#include <csp/detail/wait.hpp>
#include <csp/transport/stream.hpp>

namespace csp::transport_detail {

using csp::detail::FrameHeader;
using csp::detail::FrameKind;

/// Reply status, in the flags byte of every reply.
enum class Status : std::uint8_t { ok = 0, timeout = 1, poisoned = 2, retired = 3, error = 4 };

inline constexpr std::uint8_t kMemberWriter = 1;  // RETIRE flags: the writer side (else reader)
inline constexpr std::uint8_t kMemberJoin = 2;    // RETIRE flags: join (else leave)
inline constexpr std::uint8_t kHelloNoAck = 1;    // HELLO flags: answer only a refusal
inline constexpr std::uint8_t kWritePipelined = 1;  // WRITE flags: nobody waits for the reply
inline constexpr std::uint8_t kAckBuffered = 0x80;  // WRITE_ACK flags: u64 capacity follows
inline constexpr std::uint8_t kAckBatch = 0x40;     // WRITE_ACK flags: u64 count of pipelined writes answered ok
inline constexpr std::uint8_t kStatusMask = 0x0f;   // reply flags: the Status bits
inline constexpr unsigned kMaxPipelined = 64;       // unanswered pipelined writes per connection
inline constexpr std::uint8_t kReadAhead = 1;       // READ_REQ flags: the remote can take lent values
inline constexpr std::uint8_t kLendOn = 0x20;       // READ_DATA flags: u64 epoch first; the home lends now
inline constexpr std::uint8_t kLendBatch = 1;       // LEND flags: a batch of values (see LEND)
inline constexpr unsigned kConsumedHint = 16;       // takes between two CONSUMED hints of a remote

/// A lend word (see "Read-ahead") in memory shared with os_process children
/// forked after this call; null when none is left (the link then reads
/// without read-ahead). Call in the parent, before the fork.
std::atomic<std::uint64_t>* acquire_lend_word() noexcept;
/// Returns a word to this process's pool (the home, once its connection
/// ended); a word of another process's pool is left alone.
void release_lend_word(std::atomic<std::uint64_t>* word) noexcept;
/// False when CSP_READ_AHEAD=0 (every remote read is a round trip).
bool read_ahead_enabled() noexcept;

inline constexpr std::uint64_t kTimeoutForever = ~std::uint64_t{0};

/// Relative wire timeout for a local deadline.
std::uint64_t encode_timeout(Deadline deadline) noexcept;
/// Local deadline for a wire timeout received now.
Deadline decode_timeout(std::uint64_t timeout) noexcept;

/// Largest frame payload accepted: 4 GiB - 1 between an os_process parent
/// and child (one program, trusted); for addresses CSP_MAX_FRAME_BYTES if
/// set, else csp::detail::default_max_frame_payload (64 MiB), which bounds
/// what a hostile peer can make the host buffer.
std::uint32_t max_frame_payload(bool trusted) noexcept;

/// A non-owning reference to a callable (no allocation).
template <class Signature>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, FunctionRef>)
  FunctionRef(F&& f) noexcept  // NOLINT: implicit by design
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(object_, std::forward<A>(a)...); }

 private:
  void* object_;
  R (*call_)(void*, A...);
};

/// Reads frames from a ByteStream into one reusable buffer.
///
/// Large frames can be streamed: next(..., streaming = true) returns a frame
/// of more than kStreamAbove payload bytes as soon as its header is in, with
/// `frame.payload` holding only what is buffered so far; the caller then
/// either completes it (whole payload buffered) or reads the rest straight
/// into its destination (read_rest), so a big value is copied once, from
/// the kernel into the value, not twice.
class FrameReader {
 public:
  enum class Result : std::uint8_t { frame, eof, timeout };
  static constexpr std::size_t kStreamAbove = 256 * 1024;
  explicit FrameReader(std::uint32_t max_payload) : max_payload_(max_payload) {}

  /// Reads until a whole frame is buffered (or, streaming, its header). `frame`
  /// stays valid until the next call. eof: the stream ended at a frame
  /// boundary. Throws TransportError on a malformed header or a stream that
  /// ends mid-frame. A partial frame left unconsumed is skipped.
  Result next(ByteStream& stream, Deadline deadline, csp::detail::Frame& frame, bool streaming = false);
  /// True while the last frame returned is partial.
  [[nodiscard]] bool partial() const noexcept { return partial_ != 0; }
  /// True if next() would return a whole frame without reading the stream.
  [[nodiscard]] bool has_frame() const noexcept;
  /// True if next() would return a whole LEND or LEND_END frame without
  /// reading the stream (the kind byte unchecked: next() validates it).
  [[nodiscard]] bool has_push_frame() const noexcept;
  /// Buffers the rest of a partial frame; returns its whole payload.
  std::span<const std::byte> complete(ByteStream& stream);
  /// Buffers at least the first `n` payload bytes of a partial frame.
  std::span<const std::byte> payload_head(ByteStream& stream, std::size_t n);
  /// Copies payload bytes [offset, offset + n) of a partial frame into
  /// `dest`, reading what is not buffered straight from the stream;
  /// offset + n must be the payload's size. The frame is then consumed.
  void read_rest(ByteStream& stream, std::size_t offset, void* dest, std::size_t n);
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  bool fill(ByteStream& stream, std::size_t want, Deadline deadline, bool eof_ok, bool* eof);
  [[noreturn]] void truncated(ByteStream& stream, std::size_t need) const;

  std::vector<std::byte> buffer_;  // [begin_, end_) received, not yet returned
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::uint64_t offset_ = 0;       // stream offset of begin_, for messages
  std::uint32_t max_payload_;
  std::size_t partial_ = 0;        // payload size of the partial frame at begin_, 0 if none
};

/// The payload of a reply: whole, or the start of a large one still being
/// read (see FrameReader). Valid only during the callback it is given to.
class Payload {
 public:
  explicit Payload(std::span<const std::byte> whole) noexcept : bytes_(whole), size_(whole.size()) {}
  Payload(FrameReader& reader, ByteStream& stream, std::span<const std::byte> buffered, std::size_t size) noexcept
      : bytes_(buffered), size_(size), reader_(&reader), stream_(&stream) {}

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool partial() const noexcept { return reader_ && reader_->partial(); }
  /// The whole payload (buffering the rest of a partial one).
  std::span<const std::byte> all() {
    if (partial()) bytes_ = reader_->complete(*stream_);
    return bytes_;
  }
  /// The first `n` bytes.
  std::span<const std::byte> head(std::size_t n) {
    if (partial() && bytes_.size() < n) bytes_ = reader_->payload_head(*stream_, n);
    if (bytes_.size() < n) throw TransportError("csp: payload shorter than its fixed fields");
    return bytes_.first(n);
  }
  /// Bytes [offset, size()) into `dest` (offset + n == size()).
  void read_rest(std::size_t offset, void* dest, std::size_t n) {
    if (partial()) return reader_->read_rest(*stream_, offset, dest, n);
    auto b = bytes_.subspan(offset, n);
    if (n) std::memcpy(dest, b.data(), n);
  }

 private:
  std::span<const std::byte> bytes_;  // what is buffered (all of it when whole)
  std::size_t size_;                  // the payload's full size
  FrameReader* reader_ = nullptr;     // set for a payload that may be partial
  ByteStream* stream_ = nullptr;
};

/// Decodes the T that fills payload bytes [offset, size()): a large byte
/// vector or string of a partial frame is read straight into the value.
template <class T>
T decode_payload(Payload& payload, std::size_t offset);

/// A mutex that parks the waiting process instead of blocking its worker.
/// Not recursive. unlock() hands the lock to the first queued waiter, if it
/// sees one.
///
/// Uncontended, lock() is one CAS and unlock() a release store and a load:
/// no read-modify-write after the holder's last write to a stream, which
/// would stall until those bytes reached the peer's cache (a cross-core
/// transfer per message while the peer polls the ring; that stall was most
/// of a pipelined write's time). The price: unlock()'s load of waiting_ may
/// be performed before its store of held_ is visible (no StoreLoad fence), so
/// a waiter that registers just then can be missed; a parked waiter
/// therefore re-checks after a bounded time (kRecheckLimit, growing from
/// kRecheckFirst) besides being woken, so a missed wake-up only delays it.
class ParkingMutex {
 public:
  void lock() {
    if (!try_lock()) [[unlikely]]
      lock_contended();
  }
  void unlock() noexcept {
    if (waiting_.load(std::memory_order_relaxed) != 0 && hand_over()) [[unlikely]]
      return;  // the first waiter holds it now
    // SYNC POINT: release pairs with the acquire CAS in try_lock.
    held_.store(false, std::memory_order_release);
    // A waiter that queued after hand_over looked (missing it at worst: see above).
    if (waiting_.load(std::memory_order_relaxed) != 0) [[unlikely]]
      wake_first();
  }

 private:
  struct Node {
    csp::detail::Waiter* waiter;
    Node* next;
    bool queued;  // in the queue (guarded by queue_lock_)
  };
  bool try_lock() noexcept {
    bool expected = false;
    return held_.compare_exchange_strong(expected, true, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void lock_contended();
  /// Selects the first queued waiter with kHandOff (the lock stays held,
  /// now by it) and wakes it; false when none could be selected.
  bool hand_over() noexcept;
  /// Wakes the first queued waiter to try again.
  void wake_first() noexcept;
  /// Under queue_lock_: the first waiter selected with `token`, dequeued (null if none).
  csp::detail::Waiter* select_first_locked(std::uintptr_t token) noexcept;

  static constexpr std::uintptr_t kHandOff = csp::detail::kFirstGuard;  // wake-up token: the lock is yours
  std::atomic<bool> held_{false};            // the lock
  std::atomic<std::uint32_t> waiting_{0};    // queued waiters; changed under queue_lock_
  csp::detail::SpinLock queue_lock_;         // guards the queue
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
};

/// A frame being sent: `head` (header and small fields) and an optional
/// `tail` sent after it without copying (bulk value bytes).
struct OutFrame {
  ByteWriter& head;
  ConstBuffer tail{nullptr, 0};
};

/// Starts frame `kind` with u64 prefix `prefix` (if `with_prefix`) and value
/// `value` in `out`. Large byte vectors and strings go as the tail, uncopied
/// (`value` must then outlive the send).
template <class T>
void build_value_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags,
                       const std::uint64_t* prefix, const T& value, std::uint32_t max_payload);
/// A frame with only a header and an optional u64 prefix.
void build_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags,
                 const std::uint64_t* prefix = nullptr);
/// A frame whose payload is a string (error replies, HELLO_NAK).
void build_text_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags, std::string_view text);

/// Receives the frames a home sends unasked (LEND, LEND_END).
class PushSink {
 public:
  virtual ~PushSink() = default;
  /// Called by the reading caller, outside ClientCore's locks; throws
  /// TransportError on a malformed frame.
  virtual void on_push(const FrameHeader& header, Payload& payload) = 0;
};

/// The remote side of one connection: requests out, replies back, shared by
/// every process of this OS process that uses the channel. Concurrent calls
/// are pipelined: one caller at a time reads the stream (the leader) and
/// hands other callers their replies (leader/follower), so a blocked read
/// does not hold up a try_write of another process.
class ClientCore final : public csp::detail::Settleable {
 public:
  ClientCore(std::unique_ptr<ByteStream> stream, std::string peer, std::uint32_t max_payload);
  ~ClientCore();
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  using Build = FunctionRef<void(OutFrame&, std::uint32_t)>;
  using OnReply = FunctionRef<void(const FrameHeader&, Payload&)>;

  /// Builds a request with a fresh sequence (under the send lock), sends it
  /// and waits for its reply; `on_reply` runs while the payload is valid.
  /// Throws TransportError (and so does every later call) once the
  /// connection broke.
  void call(Build build, OnReply on_reply);
  /// Sends one frame and returns its sequence (HELLOs).
  std::uint32_t send(Build build);
  /// Waits for the reply to `seq`, sent earlier with send() (HELLO of
  /// address connections), at most until `deadline`; false on timeout.
  bool await(std::uint32_t seq, OnReply on_reply, Deadline deadline);
  /// Next sequence number (for send()).
  std::uint32_t next_sequence() noexcept { return ++sequence_; }

  /// Sends a pipelined request (a WRITE nobody waits for) once fewer than
  /// `window` (at most kMaxPipelined) are unanswered; returns its ticket.
  /// Throws TransportError once the connection broke (then nothing was
  /// sent) or when `build` throws (nothing was sent).
  std::uint64_t send_pipelined(Build build, unsigned window);
  /// Waits for the answers to pipelined requests up to `ticket`; throws
  /// what a failed one means (ChannelPoisoned, ChannelRetired, Error) and
  /// ChannelPoisoned when the connection broke first.
  void settle(std::uint64_t ticket) override;
  /// Waits for every pipelined answer; never throws.
  void settle_all() noexcept;
  /// The first failure among pipelined answers (ok while none failed).
  [[nodiscard]] Status pipelined_failure() const noexcept { return piped_failure_.load(std::memory_order_acquire); }
  /// Throws what pipelined_failure() means for the channel (if anything).
  void throw_pipelined_failure() const;
  /// The channel's name, for the messages of settle().
  void set_channel_name(std::string name) { channel_name_ = std::move(name); }

  /// Where unasked frames go (null: none are expected, they are an error).
  void set_push_sink(PushSink* sink);
  /// Unasked frames handled so far.
  [[nodiscard]] std::uint64_t pushes() const noexcept { return pushes_.load(std::memory_order_acquire); }
  /// Waits until more than `seen` unasked frames were handled (reading the
  /// stream if nobody else does). Throws TransportError once broken.
  void wait_push(std::uint64_t seen);

  /// Sends CLOSE, waits for the home's reply and closes. Idempotent, never throws.
  void close() noexcept;

  [[nodiscard]] bool broken() const;
  /// Why the connection broke (empty while it works).
  [[nodiscard]] std::string broken_reason() const;
  /// The peer, for messages ("pipe to parent pid 42", "tcp://host:7000/jobs").
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  struct Pending {
    std::uint32_t seq = 0;
    std::uint64_t ticket = 0;               // non-zero: waits for pipelined answers up to it
    std::uint64_t push_after = ~std::uint64_t{0};  // waits until pushes_ > push_after
    csp::detail::Waiter* waiter = nullptr;  // set while parked; guarded by state_
    bool done = false;                      // reply delivered (header_/payload_)
    FrameHeader header{};
    std::vector<std::byte> payload;         // copied when another caller read it
    Pending* prev = nullptr;
    Pending* next = nullptr;
  };
  void send_frame(Build build, std::uint32_t seq);
  /// Writes the frame built in out_ (send_mutex_ held); on failure unlocks
  /// send_mutex_, breaks the connection and throws.
  void write_built_locked(const OutFrame& frame);
  bool wait_reply(Pending& me, OnReply on_reply, Deadline deadline);
  bool lead(Pending& me, OnReply on_reply, Deadline deadline);
  void link(Pending& p);
  void unlink(Pending& p);
  void break_connection(std::string reason) noexcept;
  /// Waits until pipelined answers up to `ticket` arrived (TransportError if broken).
  void wait_answered(std::uint64_t ticket);
  /// Under state_: a pending that waits for pipelined answers got them.
  [[nodiscard]] bool answered_locked(const Pending& p) const noexcept {
    return (p.ticket != 0 && piped_answered_.load(std::memory_order_relaxed) >= p.ticket) ||
           pushes_.load(std::memory_order_relaxed) > p.push_after;
  }
  /// True for a caller that waits for a reply (not for pipelined answers or pushes).
  static bool waits_reply(const Pending& p) noexcept { return p.ticket == 0 && p.push_after == ~std::uint64_t{0}; }
  /// The leader got an unasked frame; true if `me` is now answered.
  bool take_push(const FrameHeader& h, Payload& payload, Pending& me);
  /// The leader got the answer to the oldest pipelined request; true if `me` is now answered.
  bool take_pipelined_answer(const FrameHeader& h, std::span<const std::byte> payload, Pending& me);
  /// Under state_, after an answer or a push: moves the waiters of other
  /// callers now answered to `wake` (to wake once unlocked); true if `me` is
  /// answered too (then unlinked, and the stream handed over).
  bool collect_answered_locked(Pending& me, std::vector<csp::detail::Waiter*>& wake);
  /// Waits until `me` (a ticket or a push count, no request of its own) is
  /// answered, leading the stream when nobody else does.
  void wait_unasked(Pending& me);
  void hand_over_locked() noexcept;
  void wake_leader_locked() noexcept;
  [[noreturn]] void throw_broken_locked();

  std::unique_ptr<ByteStream> stream_;
  const std::string peer_;
  const std::uint32_t max_payload_;
  const pid_t owner_;                    // the process that made it: only it says CLOSE
  std::atomic<std::uint32_t> sequence_{0};
  ParkingMutex send_mutex_;              // serialises writers of stream_ and guards out_
  ByteWriter out_;                       // request buffer, reused
  mutable csp::detail::SpinLock state_;  // guards everything below
  Pending* pending_ = nullptr;           // callers waiting for a reply
  bool reading_ = false;                 // a leader reads the stream
  bool closed_ = false;
  std::string broken_;                   // non-empty once broken
  FrameReader reader_;                   // used by the leader only
  // Pipelined requests (guarded by state_): tickets count them from 1;
  // those in (piped_answered_, piped_sent_] await answers, which come in
  // ticket order; ticket t went out as sequence piped_seq_[(t - 1) % kMaxPipelined].
  // piped_sent_ changes under send_mutex_ and state_ both, so a sender
  // (holding send_mutex_) reads it without state_; piped_answered_ changes
  // under state_ and is atomic so that a sender can check its window
  // without state_ (answers only raise it: room once seen stays).
  std::uint64_t piped_sent_ = 0;
  std::atomic<std::uint64_t> piped_answered_{0};
  std::uint32_t piped_seq_[kMaxPipelined] = {};
  std::atomic<Status> piped_failure_{Status::ok};  // first failed answer; its message below
  std::string piped_message_;             // guarded by state_
  std::string channel_name_;              // set once, before any pipelined request
  std::atomic<PushSink*> push_sink_{nullptr};  // where LEND frames go (called by the leader)
  std::atomic<bool> push_expected_{false};     // a sink was ever set
  std::atomic<std::uint64_t> pushes_{0};  // unasked frames handled; changed under state_
};

/// Starts `fn` as a coroutine process; `latch` (may be null) is told when
/// it ends. Used for servers and acceptors.
void start_coroutine(std::string name, std::function<void()> fn, csp::detail::Latch* latch);

// ---- value frames ------------------------------------------------------------------

namespace wire_detail {
template <class T>
struct bulk_bytes : std::false_type {};
template <class T, class A>
  requires csp::codec<std::vector<T, A>>::bulk
struct bulk_bytes<std::vector<T, A>> : std::true_type {};
template <>
struct bulk_bytes<std::string> : std::true_type {};
inline constexpr std::size_t kBulkTail = 16 * 1024;  // values larger than this go as a tail
/// True if build_value_frame would send `value` as the frame's tail.
template <class T>
bool goes_as_tail(const T& value) noexcept {
  if constexpr (bulk_bytes<T>::value) return value.size() * sizeof(typename T::value_type) >= kBulkTail;
  else return false;
}
}  // namespace wire_detail

template <class T>
void build_value_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags,
                       const std::uint64_t* prefix, const T& value, std::uint32_t max_payload) {
  if constexpr (wire_detail::bulk_bytes<T>::value) {
    const std::size_t bytes = value.size() * sizeof(typename T::value_type);
    const std::size_t length = (prefix ? 8 : 0) + 4 + bytes;  // prefix, u32 count, the bytes
    if (bytes < wire_detail::kBulkTail && length <= max_payload) {
      // The same bytes as the field-by-field path below, stored in place
      // after one resize: appending field by field (header, prefix, count,
      // bytes, each a vector insert) was a third of a small pipelined
      // write's instructions (callgrind, 8-byte stream-up).
      namespace fb = csp::detail::frame_bytes;
      std::byte* p = out.head.extend(csp::detail::frame_header_size + length);  // every byte written below
      csp::detail::encode_frame_header(
          csp::detail::FrameHeader{kind, flags, 0, static_cast<std::uint32_t>(length), seq},
          std::span<std::byte, csp::detail::frame_header_size>(p, csp::detail::frame_header_size));
      p += csp::detail::frame_header_size;
      if (prefix) {
        fb::store_u32(p, static_cast<std::uint32_t>(*prefix));
        fb::store_u32(p + 4, static_cast<std::uint32_t>(*prefix >> 32));
        p += 8;
      }
      fb::store_u32(p, static_cast<std::uint32_t>(value.size()));  // < kBulkTail: fits
      if (bytes != 0) std::memcpy(p + 4, value.data(), bytes);
      return;
    }
  }
  const std::size_t start = csp::detail::begin_frame(out.head, kind, 0, seq, flags);
  if (prefix) out.head.put_u64(*prefix);
  if constexpr (wire_detail::bulk_bytes<T>::value) {
    const std::size_t bytes = value.size() * sizeof(typename T::value_type);
    if (bytes >= wire_detail::kBulkTail) {
      csp::detail::write_count(out.head, value.size());
      const std::size_t length = out.head.size() - start - csp::detail::frame_header_size + bytes;
      if (length > max_payload)
        throw TransportError("csp: cannot send a value of " + std::to_string(bytes) +
                             " bytes: the frame limit is " + std::to_string(max_payload) +
                             " (CSP_MAX_FRAME_BYTES)");
      std::byte le[4];
      csp::detail::frame_bytes::store_u32(le, static_cast<std::uint32_t>(length));
      out.head.patch(start + 8, le, 4);
      out.tail = ConstBuffer{value.data(), bytes};
      return;
    }
  }
  csp::codec<T>::encode(out.head, value);
  csp::detail::end_frame(out.head, start, max_payload);
}

template <class T>
T decode_payload(Payload& payload, std::size_t offset) {
  if constexpr (wire_detail::bulk_bytes<T>::value) {
    // The count, then exactly that many elements: read straight into the
    // value (the bytes decode_all would accept, with its checks, and none
    // of its per-field steps: they were about half of decoding a small
    // lent value, callgrind).
    using Element = typename T::value_type;
    auto head = payload.head(offset + 4);
    const std::size_t count = csp::detail::frame_bytes::load_u32(head.data() + offset);
    if (offset + 4 + count * sizeof(Element) != payload.size())
      throw TransportError("csp: malformed input: a value of " + std::to_string(count) + " elements in " +
                           std::to_string(payload.size() - offset) + " payload bytes (decoding " +
                           csp::type_name<T>() + ")");
    if (payload.partial()) {
      T value;
      value.resize(count);
      payload.read_rest(offset + 4, value.data(), count * sizeof(Element));
      return value;
    }
    const std::byte* bytes = payload.all().data() + offset + 4;
    if constexpr (std::is_same_v<Element, char> || std::is_same_v<Element, unsigned char> ||
                  std::is_same_v<Element, std::byte>) {
      const auto* first = reinterpret_cast<const Element*>(bytes);  // bytes may be read as Element
      return T(first, first + count);                                // (no zero fill first)
    } else {
      T value;
      value.resize(count);
      if (count) std::memcpy(value.data(), bytes, count * sizeof(Element));
      return value;
    }
  }
  return csp::decode_all<T>(payload.all().subspan(offset));
}

}  // namespace csp::transport_detail
