// wire.cpp: the untyped half of csp/transport/wire.hpp: frame reading, the
// parking mutex, and the leader/follower client of a remote end.
//
// ClientCore invariants (guarded by state_):
// - pending_ lists every caller that sent a request and has not taken its
//   reply; each has a distinct sequence.
// - reading_ is true while exactly one caller (the leader) reads stream_;
//   only the leader touches reader_. A reply for another caller is copied
//   into its Pending (done = true) and that caller is woken if parked.
// - When the leader stops, it wakes one parked caller whose reply has not
//   come, which then leads. A caller parks only while reading_ is true or
//   it is done, so some caller always reads while replies are awaited.
// - broken_ is set once and never cleared; every waiter is woken then.
// - Unasked frames (LEND, LEND_END) go to push_sink_, called by the leader
//   outside state_; after the last of a run already buffered, pushes_
//   grows (under state_), which answers the callers waiting in wait_push
//   (push_after < pushes_). Such callers lead like any other, so a reader
//   waiting for lent values reads the stream.
// - The lend word pool (below) is separate: its own mutex, per OS process.
#include <csp/transport/wire.hpp>

#include <csp/transport/server.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>

#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <new>

#include <csp/error.hpp>

namespace csp::transport_detail {

using csp::detail::Clock;
using csp::detail::forever;
using csp::detail::Waiter;

std::uint64_t encode_timeout(Deadline deadline) noexcept {
  if (deadline == forever) return kTimeoutForever;
  auto now = Clock::now();
  if (deadline <= now) return 0;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  return ns <= 0 ? 1 : static_cast<std::uint64_t>(ns);
}

Deadline decode_timeout(std::uint64_t timeout) noexcept {
  if (timeout == kTimeoutForever) return forever;
  auto now = Clock::now();
  if (timeout == 0) return now;
  // Anything beyond a century is forever (and cannot overflow the clock).
  if (timeout > std::uint64_t{100} * 365 * 24 * 3600 * 1000000000ull) return forever;
  return now + std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(timeout));
}

std::uint32_t max_frame_payload(bool trusted) noexcept {
  if (trusted) return 0xFFFFFFFFu;
  if (const char* env = std::getenv("CSP_MAX_FRAME_BYTES"); env && *env) {
    unsigned long long v = std::strtoull(env, nullptr, 10);
    if (v > 0) return static_cast<std::uint32_t>(std::min<unsigned long long>(v, 0xFFFFFFFFull));
  }
  return csp::detail::default_max_frame_payload;
}

// ---- lend words ---------------------------------------------------------------------------
// A pool per OS process: one anonymous shared mapping, made when the first
// word is acquired, so every child forked after that shares it with us.
// The pool object (free list, mutex) is this process's own: a forked child
// sees the pid differ and makes its own pool for its children (it never
// takes the parent's mutex, which another thread may have held at fork).

namespace {
constexpr std::size_t kLendWords = 1024;
constexpr std::size_t kLendStride = 64;  // one word per cache line

struct LendPool {
  pid_t pid = 0;
  std::byte* base = nullptr;           // kLendWords * kLendStride bytes, MAP_SHARED
  std::mutex mutex;                    // guards free
  std::vector<std::uint32_t> free;     // unused slots
};
std::atomic<LendPool*> g_lend_pool{nullptr};

LendPool* lend_pool() noexcept {
  const pid_t me = ::getpid();
  LendPool* pool = g_lend_pool.load(std::memory_order_acquire);
  while (!pool || pool->pid != me) {
    auto* fresh = new (std::nothrow) LendPool;
    if (!fresh) return nullptr;
    void* p = ::mmap(nullptr, kLendWords * kLendStride, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      delete fresh;
      return nullptr;
    }
    fresh->pid = me;
    fresh->base = static_cast<std::byte*>(p);
    try {
      fresh->free.reserve(kLendWords);
      for (std::size_t i = kLendWords; i-- > 0;) {
        new (fresh->base + i * kLendStride) std::atomic<std::uint64_t>(0);
        fresh->free.push_back(static_cast<std::uint32_t>(i));
      }
    } catch (...) {
      ::munmap(p, kLendWords * kLendStride);
      delete fresh;
      return nullptr;
    }
    // SYNC POINT: release publishes the pool to the acquire loads above.
    if (g_lend_pool.compare_exchange_strong(pool, fresh, std::memory_order_acq_rel, std::memory_order_acquire))
      return fresh;  // (an inherited pool object is left as it is: its words are in use)
    ::munmap(p, kLendWords * kLendStride);
    delete fresh;
  }
  return pool;
}
}  // namespace

std::atomic<std::uint64_t>* acquire_lend_word() noexcept {
  if (!read_ahead_enabled()) return nullptr;
  LendPool* pool = lend_pool();
  if (!pool) return nullptr;
  std::lock_guard lock(pool->mutex);
  if (pool->free.empty()) return nullptr;
  const std::uint32_t slot = pool->free.back();
  pool->free.pop_back();
  return std::launder(reinterpret_cast<std::atomic<std::uint64_t>*>(pool->base + slot * kLendStride));
}

void release_lend_word(std::atomic<std::uint64_t>* word) noexcept {
  if (!word) return;
  LendPool* pool = g_lend_pool.load(std::memory_order_acquire);
  if (!pool || pool->pid != ::getpid()) return;
  auto* at = reinterpret_cast<std::byte*>(word);
  if (at < pool->base || at >= pool->base + kLendWords * kLendStride) return;
  // The word keeps its epoch: a child still holding values of an old epoch
  // cannot take them from the link that gets the word next.
  std::lock_guard lock(pool->mutex);
  pool->free.push_back(static_cast<std::uint32_t>((at - pool->base) / kLendStride));
}

bool read_ahead_enabled() noexcept {
  static const bool enabled = [] {
    const char* v = std::getenv("CSP_READ_AHEAD");
    return !(v && v[0] == '0' && v[1] == '\0');
  }();
  return enabled;
}

// ---- FrameReader ---------------------------------------------------------------------
// Invariant: [begin_, end_) of buffer_ holds received bytes not yet returned
// in a frame; while partial_ != 0 the frame at begin_ was returned partially
// and every buffered byte belongs to its payload.

namespace {
constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kShrinkAbove = 8u << 20;
}  // namespace

void FrameReader::truncated(ByteStream& stream, std::size_t need) const {
  throw TransportError("csp: " + stream.describe() + ": the stream ended inside a frame (" +
                       std::to_string(end_ - begin_) + " of " + std::to_string(need) +
                       " bytes received, at stream offset " + std::to_string(offset_) + ")");
}

// Reads until [begin_, end_) holds `want` bytes; grows the buffer as needed.
// Returns false when `deadline` passes first or (if `eof_ok`) the stream
// ends before any byte of `want` came (`*eof` set).
bool FrameReader::fill(ByteStream& stream, std::size_t want, Deadline deadline, bool eof_ok, bool* eof) {
  while (end_ - begin_ < want) {
    if (buffer_.size() - begin_ < want || buffer_.size() == end_) {
      if (begin_ != 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (buffer_.size() < want) buffer_.resize(std::max(want, kChunk));
      else if (buffer_.size() == end_) buffer_.resize(std::max(buffer_.size() * 2, kChunk));
    }
    auto got = stream.read_some(buffer_.data() + end_, buffer_.size() - end_, deadline);
    if (!got) return false;
    if (*got == 0) {
      if (eof_ok && end_ == begin_) {
        *eof = true;
        return false;
      }
      truncated(stream, want);
    }
    end_ += *got;
  }
  return true;
}

bool FrameReader::has_frame() const noexcept {
  if (partial_) return false;
  const std::size_t have = end_ - begin_;
  if (have < csp::detail::frame_header_size) return false;
  const std::size_t length = csp::detail::frame_bytes::load_u32(buffer_.data() + begin_ + 8);
  return have >= csp::detail::frame_header_size + length;
}

bool FrameReader::has_push_frame() const noexcept {
  if (!has_frame()) return false;
  const auto kind = static_cast<FrameKind>(std::to_integer<std::uint8_t>(buffer_[begin_ + 2]));
  return kind == FrameKind::lend || kind == FrameKind::lend_end;
}

FrameReader::Result FrameReader::next(ByteStream& stream, Deadline deadline, csp::detail::Frame& frame,
                                      bool streaming) {
  if (partial_) {
    // The caller left a partial frame: skip the rest of its payload.
    const std::size_t total = csp::detail::frame_header_size + partial_;
    std::size_t have = end_ - begin_;
    std::vector<std::byte> sink(kChunk);
    while (have < total) {
      auto got = stream.read_some(sink.data(), std::min(sink.size(), total - have), csp::detail::forever);
      if (!got || *got == 0) truncated(stream, total);
      have += *got;
    }
    begin_ = end_ = 0;
    offset_ += total;
    partial_ = 0;
  }
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (buffer_.size() > kShrinkAbove) std::vector<std::byte>(kChunk).swap(buffer_);
  }
  bool eof = false;
  if (end_ - begin_ < csp::detail::frame_header_size &&  // (a stream of small frames is mostly buffered)
      !fill(stream, csp::detail::frame_header_size, deadline, true, &eof))
    return eof ? Result::eof : Result::timeout;
  csp::detail::FrameHeader header;
  try {
    header = csp::detail::decode_frame_header(
        std::span<const std::byte, csp::detail::frame_header_size>(buffer_.data() + begin_,
                                                                    csp::detail::frame_header_size),
        max_payload_);
  } catch (const TransportError& e) {
    throw TransportError(std::string(e.what()) + " (at stream offset " + std::to_string(offset_) + ")");
  }
  const std::size_t need = csp::detail::frame_header_size + header.length;
  if (streaming && header.length > kStreamAbove && end_ - begin_ < need) {
    frame.header = header;
    frame.payload = std::span<const std::byte>(buffer_.data() + begin_ + csp::detail::frame_header_size,
                                               end_ - begin_ - csp::detail::frame_header_size);
    partial_ = header.length;
    return Result::frame;
  }
  // A frame begun must be finished whatever the deadline: the stream cannot
  // be resynchronised.
  if (end_ - begin_ < need) fill(stream, need, csp::detail::forever, false, nullptr);
  frame.header = header;
  frame.payload = std::span<const std::byte>(buffer_.data() + begin_ + csp::detail::frame_header_size, header.length);
  begin_ += need;
  offset_ += need;
  return Result::frame;
}

std::span<const std::byte> FrameReader::complete(ByteStream& stream) {
  const std::size_t need = csp::detail::frame_header_size + partial_;
  fill(stream, need, csp::detail::forever, false, nullptr);
  auto payload = std::span<const std::byte>(buffer_.data() + begin_ + csp::detail::frame_header_size, partial_);
  begin_ += need;
  offset_ += need;
  partial_ = 0;
  return payload;
}

std::span<const std::byte> FrameReader::payload_head(ByteStream& stream, std::size_t n) {
  n = std::min(n, partial_);
  fill(stream, csp::detail::frame_header_size + n, csp::detail::forever, false, nullptr);
  return {buffer_.data() + begin_ + csp::detail::frame_header_size, end_ - begin_ - csp::detail::frame_header_size};
}

void FrameReader::read_rest(ByteStream& stream, std::size_t offset, void* dest, std::size_t n) {
  if (offset + n != partial_) throw TransportError("csp: internal: read_rest must end at the payload's end");
  auto* out = static_cast<std::byte*>(dest);
  const std::size_t buffered = end_ - begin_ - csp::detail::frame_header_size;
  std::size_t done = 0;
  if (buffered > offset) {
    done = std::min(n, buffered - offset);
    std::memcpy(out, buffer_.data() + begin_ + csp::detail::frame_header_size + offset, done);
  }
  while (done < n) {
    auto got = stream.read_some(out + done, n - done, csp::detail::forever);
    if (!got || *got == 0) truncated(stream, csp::detail::frame_header_size + partial_);
    done += *got;
  }
  offset_ += csp::detail::frame_header_size + partial_;
  begin_ = end_ = 0;
  partial_ = 0;
}

// ---- ParkingMutex ----------------------------------------------------------------------

namespace {
constexpr std::chrono::microseconds kRecheckFirst{50};  // a parked waiter's first re-check
constexpr std::chrono::milliseconds kRecheckLimit{5};   // and its longest interval
}  // namespace

void ParkingMutex::lock_contended() {
  auto recheck = std::chrono::duration_cast<Clock::duration>(kRecheckFirst);
  for (;;) {
    if (try_lock()) return;
    Waiter w("lock", "transport send", false);
    Node node{&w, nullptr, true};
    queue_lock_.lock();
    if (tail_) tail_->next = &node; else head_ = &node;
    tail_ = &node;
    // SYNC POINT (one-sided Dekker): this seq_cst increment comes before the
    // CAS below, so an unlock whose load misses it stored held_ = false in
    // time for the CAS, unless that store was still in its store buffer:
    // then the re-check below catches it (see the class comment).
    waiting_.fetch_add(1, std::memory_order_seq_cst);
    queue_lock_.unlock();
    const bool got = try_lock();
    std::uintptr_t token = csp::detail::kTimedOut;
    if (!got) token = csp::detail::wait(w, Clock::now() + recheck);
    queue_lock_.lock();
    if (node.queued) {  // nobody took us off the queue
      Node** at = &head_;
      Node* prev = nullptr;
      while (*at != &node) {
        prev = *at;
        at = &(*at)->next;
      }
      *at = node.next;
      if (tail_ == &node) tail_ = prev;
      waiting_.fetch_sub(1, std::memory_order_relaxed);
    }
    queue_lock_.unlock();
    if (got) {
      // A wake_first that selected us before we left the queue wakes us:
      // absorb that wake-up before `w` goes. (hand_over cannot have: the
      // lock was free when we took it.)
      if (!w.try_select(csp::detail::kTimedOut)) csp::detail::wait(w, forever);
      return;
    }
    if (token == kHandOff) return;  // unlock() passed it to us
    recheck = std::min(recheck * 2, std::chrono::duration_cast<Clock::duration>(kRecheckLimit));
  }
}

csp::detail::Waiter* ParkingMutex::select_first_locked(std::uintptr_t token) noexcept {
  while (Node* node = head_) {
    head_ = node->next;
    if (!head_) tail_ = nullptr;
    node->queued = false;
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    // Under queue_lock_: a waiter that timed out is still in lock_contended,
    // before its own queue_lock_ section, so `node` is alive.
    if (node->waiter->try_select(token)) return node->waiter;
  }
  return nullptr;
}

bool ParkingMutex::hand_over() noexcept {
  queue_lock_.lock();
  Waiter* w = select_first_locked(kHandOff);
  queue_lock_.unlock();
  if (!w) return false;
  w->wake();  // held_ stays true: the lock is w's now
  return true;
}

void ParkingMutex::wake_first() noexcept {
  queue_lock_.lock();
  Waiter* w = select_first_locked(csp::detail::kWoken);
  queue_lock_.unlock();
  if (w) w->wake();
}

// ---- frames -----------------------------------------------------------------------------

void build_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags, const std::uint64_t* prefix) {
  const std::size_t start = csp::detail::begin_frame(out.head, kind, 0, seq, flags);
  if (prefix) out.head.put_u64(*prefix);
  csp::detail::end_frame(out.head, start, 0xFFFFFFFFu);
}

void build_text_frame(OutFrame& out, FrameKind kind, std::uint32_t seq, std::uint8_t flags, std::string_view text) {
  const std::size_t start = csp::detail::begin_frame(out.head, kind, 0, seq, flags);
  csp::detail::encode_hello_nak(out.head, text);  // a length-prefixed string
  csp::detail::end_frame(out.head, start, 0xFFFFFFFFu);
}

// ---- ClientCore -------------------------------------------------------------------------

ClientCore::ClientCore(std::unique_ptr<ByteStream> stream, std::string peer, std::uint32_t max_payload)
    : stream_(std::move(stream)), peer_(std::move(peer)), max_payload_(max_payload), owner_(::getpid()),
      reader_(max_payload) {}

ClientCore::~ClientCore() { close(); }

bool ClientCore::broken() const {
  std::lock_guard lock(state_);
  return !broken_.empty();
}

std::string ClientCore::broken_reason() const {
  std::lock_guard lock(state_);
  return broken_;
}

void ClientCore::link(Pending& p) {
  p.prev = nullptr;
  p.next = pending_;
  if (pending_) pending_->prev = &p;
  pending_ = &p;
}

void ClientCore::unlink(Pending& p) {
  if (p.prev) p.prev->next = p.next; else if (pending_ == &p) pending_ = p.next;
  if (p.next) p.next->prev = p.prev;
  p.prev = p.next = nullptr;
}

void ClientCore::throw_broken_locked() {
  std::string why = broken_;
  state_.unlock();
  throw TransportError(why);
}

void ClientCore::break_connection(std::string reason) noexcept {
  std::vector<Waiter*> wake;
  state_.lock();
  if (broken_.empty()) broken_ = reason.empty() ? "csp: " + peer_ + ": connection lost" : std::move(reason);
  for (Pending* p = pending_; p; p = p->next) {
    if (p->waiter) {
      wake.push_back(p->waiter);
      p->waiter = nullptr;
    }
  }
  state_.unlock();
  for (Waiter* w : wake)
    if (w->try_select(csp::detail::kWoken)) w->wake();
}

void ClientCore::write_built_locked(const OutFrame& frame) {
  try {
    if (frame.tail.size) {
      ConstBuffer parts[2] = {{out_.data(), out_.size()}, frame.tail};
      stream_->write_all_v(parts, 2);
    } else {
      stream_->write_all(out_.data(), out_.size());
    }
  } catch (const TransportError& e) {
    send_mutex_.unlock();
    break_connection(e.what());
    throw;
  }
}

void ClientCore::send_frame(Build build, std::uint32_t seq) {
  send_mutex_.lock();
  OutFrame frame{out_};
  try {
    out_.clear();
    build(frame, seq);  // may throw (a value over the frame limit): nothing was sent
  } catch (...) {
    send_mutex_.unlock();
    throw;
  }
  write_built_locked(frame);
  send_mutex_.unlock();
}

std::uint32_t ClientCore::send(Build build) {
  {
    std::lock_guard lock(state_);
    if (!broken_.empty()) throw TransportError(broken_);
  }
  const std::uint32_t seq = next_sequence();
  send_frame(build, seq);
  return seq;
}

void ClientCore::call(Build build, OnReply on_reply) {
  Pending me;
  me.seq = next_sequence();
  state_.lock();
  if (!broken_.empty()) throw_broken_locked();
  link(me);
  state_.unlock();
  try {
    send_frame(build, me.seq);
  } catch (...) {
    std::lock_guard lock(state_);
    unlink(me);
    throw;
  }
  wait_reply(me, on_reply, forever);
}

bool ClientCore::await(std::uint32_t seq, OnReply on_reply, Deadline deadline) {
  Pending me;
  me.seq = seq;
  state_.lock();
  if (!broken_.empty()) throw_broken_locked();
  link(me);
  state_.unlock();
  return wait_reply(me, on_reply, deadline);
}

bool ClientCore::wait_reply(Pending& me, OnReply on_reply, Deadline deadline) {
  for (;;) {
    state_.lock();
    if (answered_locked(me)) {
      unlink(me);
      state_.unlock();
      return true;
    }
    if (me.done) {
      unlink(me);
      state_.unlock();
      Payload payload(me.payload);
      on_reply(me.header, payload);
      return true;
    }
    if (!broken_.empty()) {
      unlink(me);
      throw_broken_locked();
    }
    if (!reading_) {
      reading_ = true;
      state_.unlock();
      return lead(me, on_reply, deadline);
    }
    if (deadline != forever && deadline <= Clock::now()) {
      unlink(me);
      if (!reading_) wake_leader_locked();
      state_.unlock();
      return false;
    }
    Waiter w("read", peer_, false);
    me.waiter = &w;
    state_.unlock();
    if (csp::detail::wait(w, deadline) == csp::detail::kTimedOut) {
      std::lock_guard lock(state_);
      me.waiter = nullptr;
    }
  }
}

void ClientCore::wake_leader_locked() noexcept {
  // A follower whose wait timed out loses the CAS here; it is awake anyway
  // and leads (or leaves, handing over in turn) when it runs.
  for (Pending* p = pending_; p; p = p->next) {
    if (!p->done && p->waiter) {
      Waiter* w = std::exchange(p->waiter, nullptr);
      if (w->try_select(csp::detail::kWoken)) {
        w->wake();
        return;
      }
    }
  }
}

bool ClientCore::collect_answered_locked(Pending& me, std::vector<csp::detail::Waiter*>& wake) {
  for (Pending* p = pending_; p; p = p->next) {
    if (p != &me && p->waiter && answered_locked(*p)) wake.push_back(std::exchange(p->waiter, nullptr));
  }
  if (!answered_locked(me)) return false;
  unlink(me);
  hand_over_locked();
  return true;
}

void ClientCore::hand_over_locked() noexcept {
  reading_ = false;
  wake_leader_locked();
}

bool ClientCore::lead(Pending& me, OnReply on_reply, Deadline deadline) {
  csp::detail::Frame frame;
  try {
    for (;;) {
      auto result = reader_.next(*stream_, deadline, frame, /*streaming=*/true);
      if (result == FrameReader::Result::timeout) {
        std::lock_guard lock(state_);
        unlink(me);
        hand_over_locked();
        return false;
      }
      if (result == FrameReader::Result::eof)
        throw TransportError("csp: " + peer_ + ": the peer closed the connection");
      const FrameHeader& h = frame.header;
      if (h.kind == FrameKind::lend || h.kind == FrameKind::lend_end) {
        Payload payload(reader_, *stream_, frame.payload, h.length);
        if (take_push(h, payload, me)) return true;
        continue;
      }
      bool pipelined;
      {
        std::lock_guard lock(state_);
        const std::uint64_t answered = piped_answered_.load(std::memory_order_relaxed);
        pipelined = answered < piped_sent_ && h.kind == FrameKind::write_ack &&
                    ((h.flags & kAckBatch) || h.sequence == piped_seq_[answered % kMaxPipelined]);
      }
      if (pipelined) {
        std::span<const std::byte> bytes = frame.payload;
        if (reader_.partial()) bytes = reader_.complete(*stream_);
        if (take_pipelined_answer(h, bytes, me)) return true;
        continue;
      }
      if (waits_reply(me) && h.sequence == me.seq) {
        // Still the leader while on_reply reads the buffer.
        std::exception_ptr error;
        try {
          Payload payload(reader_, *stream_, frame.payload, h.length);
          on_reply(h, payload);
          if (reader_.partial()) reader_.complete(*stream_);  // a reply the callback did not read
        } catch (...) {
          error = std::current_exception();
        }
        {
          std::lock_guard lock(state_);
          unlink(me);
          hand_over_locked();
        }
        if (error) std::rethrow_exception(error);
        return true;
      }
      std::span<const std::byte> bytes = frame.payload;
      if (reader_.partial()) bytes = reader_.complete(*stream_);
      Waiter* wake = nullptr;
      bool found = false;
      {
        std::lock_guard lock(state_);
        for (Pending* p = pending_; p; p = p->next) {
          if (waits_reply(*p) && p->seq == h.sequence && !p->done) {
            p->header = h;
            p->payload.assign(bytes.begin(), bytes.end());
            p->done = true;
            wake = std::exchange(p->waiter, nullptr);
            found = true;
            break;
          }
        }
      }
      if (wake && wake->try_select(csp::detail::kWoken)) wake->wake();
      if (!found) {
        if (h.kind == FrameKind::hello_nak)
          throw TransportError(csp::detail::decode_hello_nak(bytes));
        throw TransportError("csp: " + peer_ + ": unexpected " + std::string(csp::detail::frame_kind_name(h.kind)) +
                             " frame (sequence " + std::to_string(h.sequence) + ")");
      }
    }
  } catch (const TransportError& e) {
    break_connection(e.what());
    std::string why;
    {
      std::lock_guard lock(state_);
      reading_ = false;
      unlink(me);
      why = broken_;
    }
    throw TransportError(why);
  }
}

bool ClientCore::take_pipelined_answer(const FrameHeader& h, std::span<const std::byte> payload, Pending& me) {
  if (h.kind != FrameKind::write_ack)
    throw TransportError("csp: " + peer_ + ": " + std::string(csp::detail::frame_kind_name(h.kind)) +
                         " in answer to a pipelined WRITE");
  const auto status = static_cast<Status>(h.flags & kStatusMask);
  if (status > Status::error) throw TransportError("csp: " + peer_ + ": reply with unknown status " + std::to_string(h.flags));
  std::uint64_t count = 1;
  if (h.flags & kAckBatch) {
    if (payload.size() < 8 || status != Status::ok)
      throw TransportError("csp: " + peer_ + ": malformed batched WRITE_ACK");
    count = ByteReader(payload.first(8)).get_u64();
  }
  std::string message;
  if (status == Status::error) message = csp::detail::decode_hello_nak(payload);
  else if (status == Status::timeout) message = "csp: " + peer_ + ": a pipelined write timed out at the home";
  std::vector<Waiter*> wake;
  bool mine = false;
  {
    std::lock_guard lock(state_);
    const std::uint64_t answered = piped_answered_.load(std::memory_order_relaxed);
    if (count == 0 || count > piped_sent_ - answered ||
        h.sequence != piped_seq_[(answered + count - 1) % kMaxPipelined])
      throw TransportError("csp: " + peer_ + ": a WRITE_ACK answers " + std::to_string(count) +
                           " pipelined writes that were not sent (sequence " + std::to_string(h.sequence) + ")");
    piped_answered_.store(answered + count, std::memory_order_relaxed);
    if (status != Status::ok && piped_failure_.load(std::memory_order_relaxed) == Status::ok) {
      piped_message_ = std::move(message);
      piped_failure_.store(status == Status::timeout ? Status::error : status, std::memory_order_release);
    }
    mine = collect_answered_locked(me, wake);
  }
  for (Waiter* w : wake)
    if (w->try_select(csp::detail::kWoken)) w->wake();
  return mine;
}

void ClientCore::set_push_sink(PushSink* sink) {
  // SYNC POINT: release pairs with the acquire loads in take_push (the
  // expected flag is set first, so a reader that sees no sink after one was
  // set sees the flag).
  if (sink) push_expected_.store(true, std::memory_order_release);
  push_sink_.store(sink, std::memory_order_release);
}

void ClientCore::wait_push(std::uint64_t seen) {
  Pending me;
  me.push_after = seen;
  wait_unasked(me);
}

void ClientCore::wait_unasked(Pending& me) {
  me.seq = 0;  // never matches a reply: sequences start at 1
  state_.lock();
  if (answered_locked(me)) {
    state_.unlock();
    return;
  }
  if (!broken_.empty()) throw_broken_locked();
  link(me);
  state_.unlock();
  wait_reply(me, [](const FrameHeader&, Payload&) {}, forever);
}

bool ClientCore::take_push(const FrameHeader& h, Payload& payload, Pending& me) {
  // Atomics, not state_: a lock per frame of a stream of lent values.
  if (PushSink* sink = push_sink_.load(std::memory_order_acquire)) {
    sink->on_push(h, payload);
  } else if (!push_expected_.load(std::memory_order_acquire)) {
    throw TransportError("csp: " + peer_ + ": unexpected " + std::string(csp::detail::frame_kind_name(h.kind)) +
                         " frame (this end never asked for lent values)");
  }  // else: the channel end is gone; what it was lent comes back at the home
  if (reader_.partial()) reader_.complete(*stream_);
  // The rest of a batch already buffered goes to the sink first: the
  // readers waiting for lent values then wake once per batch, not once per
  // value (each wake-up of a reader that finds its queue empty costs a
  // CONSUMED hint and a round of leading).
  if (reader_.has_push_frame()) return false;
  std::vector<Waiter*> wake;
  bool mine = false;
  {
    std::lock_guard lock(state_);
    pushes_.fetch_add(1, std::memory_order_release);
    mine = collect_answered_locked(me, wake);
  }
  for (Waiter* w : wake)
    if (w->try_select(csp::detail::kWoken)) w->wake();
  return mine;
}

void ClientCore::wait_answered(std::uint64_t ticket) {
  if (ticket == 0) return;  // nothing was sent
  Pending me;
  me.ticket = ticket;
  wait_unasked(me);
}

std::uint64_t ClientCore::send_pipelined(Build build, unsigned window) {
  window = std::clamp(window, 1u, kMaxPipelined);
  send_mutex_.lock();
  // piped_sent_ changes only under send_mutex_ (held) and answers only
  // raise piped_answered_, so room seen here is still there when we send.
  for (;;) {
    const std::uint64_t answered = piped_answered_.load(std::memory_order_relaxed);
    if (piped_sent_ - answered < window) break;
    const std::uint64_t target = piped_sent_ - window + 1;  // room once this one is answered
    send_mutex_.unlock();
    wait_answered(target);  // throws TransportError once broken
    send_mutex_.lock();
  }
  const std::uint32_t seq = next_sequence();
  OutFrame frame{out_};
  try {
    out_.clear();
    build(frame, seq);  // may throw (a value over the frame limit): nothing was sent
  } catch (...) {
    send_mutex_.unlock();
    throw;
  }
  // The sequence joins the ring under the send lock, so the ring's order is
  // the stream's order and so the order of the answers.
  std::uint64_t ticket;
  state_.lock();
  if (!broken_.empty()) {
    std::string why = broken_;
    state_.unlock();
    send_mutex_.unlock();
    throw TransportError(why);
  }
  ticket = ++piped_sent_;
  piped_seq_[(ticket - 1) % kMaxPipelined] = seq;
  state_.unlock();
  write_built_locked(frame);
  send_mutex_.unlock();
  return ticket;
}

void ClientCore::throw_pipelined_failure() const {
  const Status status = pipelined_failure();
  if (status == Status::ok) return;
  const std::string channel = "csp: channel '" + channel_name_ + "'";
  switch (status) {
    case Status::poisoned:
      throw ChannelPoisoned(channel + " is poisoned");
    case Status::retired:
      throw ChannelRetired(channel + ": every reader has retired");
    default: {
      std::lock_guard lock(state_);
      throw Error(channel + ": a pipelined write failed: " + piped_message_);
    }
  }
}

void ClientCore::settle(std::uint64_t ticket) {
  try {
    wait_answered(ticket);
  } catch (const TransportError& e) {
    throw ChannelPoisoned("csp: channel '" + channel_name_ + "' is poisoned: lost its home (" + e.what() + ")");
  }
  throw_pipelined_failure();
}

void ClientCore::settle_all() noexcept {
  try {
    std::uint64_t last;
    {
      std::lock_guard lock(state_);
      last = piped_sent_;
    }
    wait_answered(last);
  } catch (...) {  // broken: nothing more will be answered
  }
}

void ClientCore::close() noexcept {
  {
    std::lock_guard lock(state_);
    if (closed_) return;
    closed_ = true;
  }
  if (::getpid() != owner_) return;  // inherited by an os_process child: not ours to end
  settle_all();  // what was pipelined is performed before the remote's ends leave
  try {
    bool ok;
    {
      std::lock_guard lock(state_);
      ok = broken_.empty();
    }
    if (ok) {
      call([](OutFrame& out, std::uint32_t seq) { build_frame(out, FrameKind::close, seq, 0); },
           [](const FrameHeader&, Payload&) {});
    }
  } catch (...) {
  }
  break_connection("csp: " + peer_ + ": the connection was closed");
  stream_->close();
}

// ---- coroutines ------------------------------------------------------------------------------

namespace {
class FunctionBody final : public csp::detail::ProcessBody {
 public:
  explicit FunctionBody(std::function<void()> fn) : fn_(std::move(fn)) {}
  std::exception_ptr run() noexcept override {
    std::exception_ptr error;
    try {
      fn_();
    } catch (...) {
      error = std::current_exception();
    }
    fn_ = nullptr;
    return error;
  }

 private:
  std::function<void()> fn_;
};
}  // namespace

void start_coroutine(std::string name, std::function<void()> fn, csp::detail::Latch* latch) {
  auto body = std::make_unique<FunctionBody>(std::move(fn));
  body->name_ = std::move(name);
  csp::detail::start(std::move(body), latch, csp::detail::Placement::coroutine);
}

}  // namespace csp::transport_detail

namespace csp::transport_detail {

PollHints& poll_hints(const void* channel) noexcept {
  static PollHints table[256];
  auto h = reinterpret_cast<std::uintptr_t>(channel);
  h ^= h >> 17;
  h *= 0x9E3779B97F4A7C15ull;
  return table[(h >> 56) & 255];
}

}  // namespace csp::transport_detail
