// csp/transport/remote_channel.hpp: a channel end in an OS process other
// than the channel's home. Every operation is a request to the home's
// ChannelServer (see csp/transport/wire.hpp) and returns once the home has
// answered, so rendezvous, buffering, poison and retire are the home
// channel's own. Not lockable: alternation polls it (read_until(now),
// write_until(v, now)), and the home helps two remote selects meet (see
// server.hpp, "lingering polls").
//
// Failure: when the connection breaks (the home died or closed), every
// blocked and later operation throws ChannelPoisoned naming the peer and
// the address, and poison()/leave() become local no-ops.
//
// Read-ahead (wire.hpp, "Read-ahead"): given a lend word, reads of a
// FIFO-buffered home take values the home lent ahead (LEND frames, queued
// in ahead_) by a CAS on the word; a value the home revoked first is
// dropped, never returned.
//
// Thread-safety: any number of processes and threads of this OS process
// may use one RemoteChannel at once; requests are pipelined on the one
// connection (ClientCore). ahead_lock_ guards the read-ahead state; it is
// never held across a call into ClientCore.
#pragma once

#include <algorithm>
#include <array>
#include <cstdlib>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <csp/channel_impl.hpp>
#include <csp/codec.hpp>
#include <csp/error.hpp>
#include <csp/transport/wire.hpp>

namespace csp::transport_detail {

template <class T>
class RemoteChannel final : public csp::detail::ChannelImpl<T>, private PushSink {
  static_assert(csp::Codable<T>,
                "a channel that crosses an OS process boundary needs a codable element type: "
                "specialise csp::codec<T> (see csp/codec.hpp)");
  using Side = csp::detail::Side;

 public:
  /// `members`: how many members this process already is on each side at
  /// the home ([reader, writer]); an os_process child's argument end is 1.
  /// `lend_word`: the link's lend word (os_process links), null for none:
  /// then every read is a round trip.
  RemoteChannel(std::string name, std::shared_ptr<ClientCore> core, std::array<std::size_t, 2> members = {0, 0},
                std::atomic<std::uint64_t>* lend_word = nullptr)
      : csp::detail::ChannelImpl<T>(std::move(name)), core_(std::move(core)), settle_on_(core_), members_(members),
        lend_word_(lend_word) {
    core_->set_channel_name(this->name());
    if (lend_word_) core_->set_push_sink(this);
  }
  ~RemoteChannel() override {
    if (lend_word_) core_->set_push_sink(nullptr);
    core_->close();
  }

  std::optional<T> read_until(csp::detail::Deadline deadline) override {
    check_usable();
    if (lend_word_) {
      // Lent values first; with none, a blocking read waits for more while
      // the home lends to us (wire.hpp, "Read-ahead").
      for (;;) {
        const std::uint64_t seen = core_->pushes();
        std::optional<T> got;
        bool wait = false;
        unsigned report = 0;
        std::string broken;  // a lent value that does not decode: the connection is lost
        {
          std::lock_guard lock(ahead_lock_);
          bool asked = false;
          try {
            asked = take_locked(got);
          } catch (const TransportError& e) {
            broken = e.what();
          }
          if (got) {
            if (++unreported_ >= kConsumedHint || asked) report = std::exchange(unreported_, 0);
          } else {
            wait = deadline == csp::detail::forever && lending_locked();
            report = std::exchange(unreported_, 0);  // before waiting: the home may need the room
          }
        }
        if (!broken.empty()) lost(broken);
        if (report) hint_consumed();
        if (got) return got;
        if (!wait) break;
        try {
          core_->wait_push(seen);
        } catch (const TransportError& e) {
          lost(e.what());
        }
        check_usable();
      }
    }
    const std::uint64_t timeout = encode_timeout(deadline);
    const std::uint8_t flags = lend_word_ ? kReadAhead : 0;
    std::optional<T> out;
    Reply reply;
    std::uint64_t epoch = 0;
    try {
      core_->call([&](OutFrame& f, std::uint32_t seq) { build_frame(f, FrameKind::read_req, seq, flags, &timeout); },
                  [&](const FrameHeader& h, Payload& payload) {
                    reply.take(h, payload, FrameKind::read_data);
                    std::size_t offset = 0;
                    if (h.flags & kLendOn) {
                      if (!lend_word_ || reply.status == Status::error)
                        throw TransportError("csp: " + core_->peer() + ": READ_DATA lends to a reader that did not ask");
                      epoch = ByteReader(payload.head(8)).get_u64();
                      if (epoch == 0 || epoch > csp::detail::lend_word::kMaxEpoch)
                        throw TransportError("csp: " + core_->peer() + ": READ_DATA with lend epoch " +
                                             std::to_string(epoch));
                      offset = 8;
                    }
                    if (reply.status == Status::ok) out.emplace(decode_payload<T>(payload, offset));
                  });
    } catch (const TransportError& e) {
      lost(e.what());
    }
    if (epoch != 0) {
      std::lock_guard lock(ahead_lock_);
      const auto e = static_cast<std::uint32_t>(epoch);
      if (newer(e, lend_epoch_)) lend_epoch_ = e;
    }
    finish(reply, Side::writer);
    return out;
  }

  /// A blocking write: pipelined once the home said it is buffered (see
  /// wire.hpp, "Pipelining"), else a request like write_until's.
  void write(T& value) override {
    const unsigned window = window_.load(std::memory_order_relaxed);
    if (window == 0) {
      write_until(value, csp::detail::forever);
      return;
    }
    check_usable();
    core_->throw_pipelined_failure();
    std::uint64_t ticket = 0;
    try {
      ticket = core_->send_pipelined(
          [&](OutFrame& f, std::uint32_t seq) {
            build_value_frame(f, FrameKind::write, seq, kWritePipelined, &kTimeoutForever, value, core_->max_payload());
          },
          window);
    } catch (const TransportError& e) {
      if (!core_->broken()) throw;  // the value could not be encoded: nothing was sent
      lost(e.what());
    }
    csp::detail::note_unsettled(settle_on_, ticket);
  }
  [[nodiscard]] const csp::detail::Settleable* pipeline() const noexcept override { return core_.get(); }

  bool write_until(T& value, csp::detail::Deadline deadline) override {
    check_usable();
    const std::uint64_t timeout = encode_timeout(deadline);
    Reply reply;
    try {
      core_->call(
          [&](OutFrame& f, std::uint32_t seq) {
            build_value_frame(f, FrameKind::write, seq, 0, &timeout, value, core_->max_payload());
          },
          [&](const FrameHeader& h, Payload& payload) { reply.take(h, payload, FrameKind::write_ack); });
    } catch (const TransportError& e) {
      if (!core_->broken()) throw;  // the value could not be encoded: nothing was sent
      lost(e.what());
    }
    finish(reply, Side::reader);
    if (reply.capacity != 0 && window_.load(std::memory_order_relaxed) == 0 && pipelining_enabled())
      window_.store(static_cast<unsigned>(std::min<std::uint64_t>(reply.capacity, kMaxPipelined)),
                    std::memory_order_relaxed);
    return reply.status == Status::ok;
  }

  void join(Side side) override {
    std::lock_guard lock(membership_);
    if (members_[index(side)]++ == 0) membership(side, true);
  }
  void leave(Side side) override {
    if (side == Side::writer) core_->settle_all();  // pipelined writes land before the side may retire
    std::lock_guard lock(membership_);
    auto& n = members_[index(side)];
    if (n > 0 && --n == 0) {
      try {
        membership(side, false);  // the home takes back what it lent us first
      } catch (const Error&) {  // the home is gone: nothing left to leave
      }
      if (side == Side::reader && lend_word_) {
        std::lock_guard ahead(ahead_lock_);
        ahead_.clear();  // revoked at the home by now
      }
    }
  }

  /// Poisons the home channel; never throws (a lost home is poisoned already).
  void poison() override {
    poisoned_.store(true, std::memory_order_release);
    try {
      core_->call([&](OutFrame& f, std::uint32_t seq) { build_frame(f, FrameKind::poison, seq, 0); },
                  [&](const FrameHeader&, Payload&) {});
    } catch (const Error&) {
    }
  }
  [[nodiscard]] bool poisoned() const override { return poisoned_.load(std::memory_order_acquire); }

  /// Ends the connection (CLOSE): later operations throw ChannelPoisoned.
  void close() noexcept { core_->close(); }
  [[nodiscard]] const std::shared_ptr<ClientCore>& core() const noexcept { return core_; }

 private:
  struct Reply {
    Status status = Status::error;
    std::string message;
    std::uint64_t capacity = 0;  // the home's buffer (an ok WRITE_ACK with kAckBuffered)
    void take(const FrameHeader& h, Payload& payload, FrameKind expected) {
      if (h.kind != expected)
        throw TransportError("csp: expected " + std::string(csp::detail::frame_kind_name(expected)) + ", got " +
                             std::string(csp::detail::frame_kind_name(h.kind)));
      if ((h.flags & kStatusMask) > static_cast<std::uint8_t>(Status::error) ||
          ((h.flags & kAckBuffered) && h.kind != FrameKind::write_ack) ||
          ((h.flags & kLendOn) && h.kind != FrameKind::read_data))
        throw TransportError("csp: reply with unknown status " + std::to_string(h.flags));
      status = static_cast<Status>(h.flags & kStatusMask);
      if (status == Status::error && !(h.flags & kLendOn)) message = csp::detail::decode_hello_nak(payload.all());
      if ((h.flags & kAckBuffered) && status == Status::ok) capacity = ByteReader(payload.head(8)).get_u64();
    }
  };

  /// CSP_PIPELINE=0 turns pipelined writes off (every write waits for its home).
  static bool pipelining_enabled() noexcept {
    static const bool enabled = [] {
      const char* v = std::getenv("CSP_PIPELINE");
      return !(v && v[0] == '0' && v[1] == '\0');
    }();
    return enabled;
  }

  static std::size_t index(Side side) noexcept { return side == Side::reader ? 0 : 1; }

  void check_usable() {
    if (core_->pipelined_failure() == Status::poisoned) poisoned_.store(true, std::memory_order_release);
    if (poisoned_.load(std::memory_order_acquire)) {
      std::string why = lost_reason();
      if (!why.empty()) throw ChannelPoisoned(lost_message(why));
      this->throw_poisoned();
    }
  }

  std::string lost_reason() const {
    std::lock_guard lock(lost_lock_);
    return lost_reason_;
  }
  std::string lost_message(const std::string& why) const {
    return "csp: channel '" + this->name() + "' is poisoned: lost its home (" + why + ")";
  }

  [[noreturn]] void lost(const std::string& why) {
    {
      std::lock_guard lock(lost_lock_);
      if (lost_reason_.empty()) lost_reason_ = why;
    }
    poisoned_.store(true, std::memory_order_release);
    throw ChannelPoisoned(lost_message(lost_reason()));
  }

  void finish(const Reply& reply, Side other) {
    switch (reply.status) {
      case Status::ok:
      case Status::timeout:
        return;
      case Status::poisoned:
        poisoned_.store(true, std::memory_order_release);
        this->throw_poisoned();
      case Status::retired:
        this->throw_retired(other);
      case Status::error:
        throw Error(reply.message);
    }
  }

  void membership(Side side, bool join) {
    const std::uint8_t flags =
        static_cast<std::uint8_t>((side == Side::writer ? kMemberWriter : 0) | (join ? kMemberJoin : 0));
    try {
      core_->call([&](OutFrame& f, std::uint32_t seq) { build_frame(f, FrameKind::retire, seq, flags); },
                  [&](const FrameHeader&, Payload&) {});
    } catch (const TransportError& e) {
      lost(e.what());
    }
  }

  // ---- read-ahead (wire.hpp) ----

  /// Values the home lent, consecutive in one epoch: taken only by a CAS
  /// on the lend word, one at a time from the front. A LEND batch stays
  /// encoded until its values are taken, so each is decoded (allocated)
  /// right before the reader gets it and frees the one before: decoding a
  /// whole batch at once overflowed the allocator's per-thread cache (glibc
  /// keeps 7 chunks per size), which sent most allocations and frees down
  /// its slow path (callgrind, 64 B shm stream: a third of the child's
  /// malloc and free instructions).
  struct Run {
    std::uint32_t epoch = 0;
    std::uint16_t index = 0;          // the front value's index
    std::optional<T> value;           // the front value, decoded
    std::vector<std::byte> encoded;   // the values after it: u32 length, then the bytes, each
    std::size_t next = 0;             // offset in `encoded` of the next one
    [[nodiscard]] bool done() const noexcept { return !value && next == encoded.size(); }
  };

  /// a newer than b (epochs wrap, skipping 0).
  static bool newer(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) > 0; }

  /// Under ahead_lock_: the home lends to us now (we may wait for LENDs).
  [[nodiscard]] bool lending_locked() const noexcept { return lend_epoch_ != 0 && newer(lend_epoch_, ended_epoch_); }

  /// Under ahead_lock_: takes the oldest lent value the home has not
  /// revoked (dropping revoked ones) into `out`; true if the home asked
  /// for a CONSUMED hint (someone there waits for room). Throws
  /// TransportError for a lent value that does not decode.
  bool take_locked(std::optional<T>& out) {
    namespace lw = csp::detail::lend_word;
    while (!ahead_.empty()) {
      Run& front = ahead_.front();
      std::uint64_t w = lend_word_->load(std::memory_order_acquire);
      if (lw::epoch(w) != front.epoch) {  // revoked: the whole run went back to the home
        ahead_.pop_front();
        continue;
      }
      if (!front.value) {  // decoded before the take: a value we take is never lost to a decode error
        const std::uint32_t length = csp::detail::frame_bytes::load_u32(front.encoded.data() + front.next);
        Payload bytes(std::span<const std::byte>(front.encoded.data() + front.next + 4, length));
        front.value.emplace(decode_payload<T>(bytes, 0));
        front.next += 4 + std::size_t{length};
      }
      for (;;) {
        if (lw::epoch(w) != front.epoch) break;  // revoked meanwhile
        if (lw::taken(w) != front.index)
          throw TransportError("csp: channel '" + this->name() + "': lent value " + std::to_string(front.index) +
                               " out of order (the home's word says taken " + std::to_string(lw::taken(w)) + ")");
        // SYNC POINT: pairs with the home's CAS in lend_word::revoke; the
        // first of the two decides whether this value is ours.
        if (lend_word_->compare_exchange_weak(
                w, lw::make(lw::epoch(w), static_cast<std::uint16_t>(lw::taken(w) + 1)),
                std::memory_order_acq_rel, std::memory_order_acquire)) {
          out.emplace(std::move(*front.value));
          front.value.reset();
          ++front.index;
          if (front.done()) ahead_.pop_front();
          return lw::wants_hint(w);  // `w` is the word our CAS replaced
        }
      }
      ahead_.pop_front();
    }
    return false;
  }

  /// LEND and LEND_END frames (called by whichever caller reads the stream).
  void on_push(const FrameHeader& h, Payload& payload) override {
    if (h.kind == FrameKind::lend_end) {
      ByteReader in(payload.all());
      const std::uint32_t epoch = in.get_u32();
      in.expect_end("LEND_END");
      std::lock_guard lock(ahead_lock_);
      if (epoch != 0 && newer(epoch, ended_epoch_)) ended_epoch_ = epoch;
      return;
    }
    ByteReader head(payload.head(8));
    const std::uint32_t epoch = head.get_u32();
    const std::uint32_t index = head.get_u32();
    if (epoch == 0 || epoch > csp::detail::lend_word::kMaxEpoch || index > 0xFFFF)
      throw TransportError("csp: " + core_->peer() + ": LEND with epoch " + std::to_string(epoch) + ", index " +
                           std::to_string(index));
    Run run;
    run.epoch = epoch;
    run.index = static_cast<std::uint16_t>(index);
    if (!(h.flags & kLendBatch)) throw TransportError("csp: " + core_->peer() + ": LEND without kLendBatch");
    // Each value's length, then its bytes (wire.hpp, LEND). One value is
    // decoded from the payload in place (a large one straight from the
    // stream). A batch whose framing is broken queues nothing and drops the
    // connection; a value that does not decode is found when it is next to
    // be taken, before its take, and poisons this end (read_until).
    if (payload.size() >= 12) {
      const std::uint32_t length = ByteReader(payload.head(12).subspan(8)).get_u32();
      if (std::uint64_t{length} + 12 == payload.size()) {
        run.value.emplace(decode_payload<T>(payload, 12));
        std::lock_guard lock(ahead_lock_);
        ahead_.push_back(std::move(run));
        return;
      }
    }
    ByteReader in(payload.all());
    in.take(8);
    if (in.empty()) throw TransportError("csp: " + core_->peer() + ": empty LEND batch");
    const auto encoded = in.take(in.remaining());
    for (ByteReader walk(encoded); !walk.empty();) {  // the framing is checked now, each value when taken
      const std::uint32_t length = walk.get_u32();
      if (length > walk.remaining())
        throw TransportError("csp: " + core_->peer() + ": LEND batch value of " + std::to_string(length) +
                             " bytes with " + std::to_string(walk.remaining()) + " left");
      walk.take(length);
    }
    run.encoded.assign(encoded.begin(), encoded.end());
    std::lock_guard lock(ahead_lock_);
    ahead_.push_back(std::move(run));
  }

  /// Tells the home we took lent values (it frees their room).
  void hint_consumed() {
    try {
      core_->send([](OutFrame& f, std::uint32_t seq) { build_frame(f, FrameKind::consumed, seq, 0); });
    } catch (const TransportError&) {
      // broken: the next operation reports it
    }
  }

  std::shared_ptr<ClientCore> core_;      // the connection to the home
  const std::shared_ptr<csp::detail::Settleable> settle_on_;  // core_ as what settles: no conversion per write
  ParkingMutex membership_;               // orders join/leave requests; guards members_
  std::array<std::size_t, 2> members_;    // ends of this process per side [reader, writer]
  std::atomic<bool> poisoned_{false};     // known poisoned (by a reply, poison() or a lost home)
  std::atomic<unsigned> window_{0};       // pipelined writes allowed unanswered; 0: none (not known buffered)
  mutable csp::detail::SpinLock lost_lock_;     // guards lost_reason_ while it is written
  std::string lost_reason_;               // why the connection broke; set once
  std::atomic<std::uint64_t>* const lend_word_;  // shared with the home (null: no read-ahead)
  csp::detail::SpinLock ahead_lock_;      // guards the members below
  std::deque<Run> ahead_;                 // values lent to us, oldest first (some maybe revoked)
  std::uint32_t lend_epoch_ = 0;          // the latest epoch the home said it lends in (kLendOn)
  std::uint32_t ended_epoch_ = 0;         // the latest epoch the home said it stopped (LEND_END)
  unsigned unreported_ = 0;               // takes since the last CONSUMED hint
};

}  // namespace csp::transport_detail
