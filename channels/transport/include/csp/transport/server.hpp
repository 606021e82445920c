// csp/transport/server.hpp: the home side of one connection. A
// ChannelServer performs each request of a remote end on the home channel
// (an InprocChannel, or a RemoteChannel when the home is itself remote) and
// answers it; the protocol is in csp/transport/wire.hpp.
//
// Structure: serve() is the connection's reader, run by one coroutine. It
// answers handshake, POISON, RETIRE (membership) and CLOSE itself, and tries
// each WRITE and READ_REQ at once (deadline now). An operation that has to
// wait goes to an executor: a coroutine of this connection that performs it
// with the remote's deadline and sends the reply, then parks until the next
// such operation. So a blocked remote read never stops the reader from
// seeing a POISON that should wake it.
//
// Pipelined WRITEs (wire.hpp) cost per batch, not per value, where they
// can: the reader decodes those it has read in one go (batch_), buffers as
// many as fit under one channel lock (buffer_now), and answers ok ones with
// one batched WRITE_ACK per kMaxPipelined / 4 (and before it may wait); a
// write that cannot complete at once goes to the draining executor, which
// answers in batches too. Any other request performs the batch first.
//
// Lingering polls: alternation polls a remote channel (try_now), so two
// remote selects on the two sides of an unbuffered channel would poll
// forever without meeting. When a read poll finds nothing and a remote
// polled the same home channel for writing within kPollWindow, the read
// waits up to kLinger (an ordinary timed operation: it completes or leaves
// everything as it was). kLinger exceeds the longest nap of a polling
// select (2 ms), so the writer's next poll of this channel meets it. Only
// reads linger: were both sides to linger, two selects could keep lingering
// on different channels in step and miss each other.
//
// Read-ahead (wire.hpp, "Read-ahead"): with a lend word, the server is the
// home channel's Borrower. A READ_REQ with kReadAhead that completes (ok or
// timeout) attaches it (lend_attach) and starts the lending executor: one
// executor of the connection that loops on home_->lend(), sending what it
// lends as LEND frames in one write per batch, parking in the channel when
// there is nothing to lend, and sending LEND_END when the lending ended.
// RETIRE (leave reader), CLOSE and the end of the connection revoke first.
//
// Invariants (pool_lock_ guards the executor pool):
// - busy_ counts executors performing an operation; idle_ lists the parked
//   ones; executors_ counts live executor coroutines.
// - After stopping_ is set no executor parks again; the reader waits until
//   executors_ is zero before serve() returns, so no executor outlives the
//   server.
// - Replies are written under send_mutex_, by the reader and executors.
// - lend_running_: one executor runs (or is dispatched to run) the lending
//   loop; it never counts in busy_; lend_generation_ counts attaches, so a loop that found itself
//   detached re-checks before it ends. lend_out_ is that executor's.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <csp/channel.hpp>
#include <csp/codec.hpp>
#include <csp/detail/frame.hpp>
#include <csp/error.hpp>
#include <csp/transport/wire.hpp>

namespace csp::transport_detail {

/// Poll times of remotes on one home channel (hashed by address: a
/// collision only makes a poll linger needlessly).
struct PollHints {
  std::atomic<std::int64_t> last_poll_ns[2]{};  // [0] reads, [1] writes; steady clock
};
PollHints& poll_hints(const void* channel) noexcept;
inline constexpr std::chrono::microseconds kPollWindow{10000};
inline constexpr std::chrono::microseconds kLinger{3000};

/// Reports a dropped connection of a hosted channel (the handler set by
/// csp::set_transport_error_handler, stderr by default).
void report_transport_error(const TransportError& error) noexcept;

/// Poisons `home`, giving `reason` if the implementation takes one.
template <class C>
void poison_with_reason(C& home, const std::string& reason) {
  if constexpr (requires { home.poison(reason); }) home.poison(reason);
  else home.poison();
}

template <class T>
class ChannelServer final : private csp::detail::Borrower<T> {
  using Side = csp::detail::Side;
  using Deadline = csp::detail::Deadline;
  using LendResult = csp::detail::LendResult;

 public:
  struct Options {
    std::string peer;               // the remote, for messages ("os_process 'x' (pid 12) over pipe")
    std::string address;            // this end, for handshake messages
    std::uint32_t max_payload = 0;  // largest frame accepted and sent
    bool hosted = false;            // report dropped connections (addresses)
    std::atomic<std::uint64_t>* lend_word = nullptr;  // the link's lend word (os_process links): read-ahead
  };
  enum class Outcome : std::uint8_t { closed, lost, rejected };

  ChannelServer(std::shared_ptr<csp::detail::ChannelImpl<T>> home, std::unique_ptr<ByteStream> stream, Options options)
      : csp::detail::Borrower<T>(options.lend_word), home_(std::move(home)), stream_(std::move(stream)),
        options_(std::move(options)), hints_(poll_hints(home_.get())) {}
  ChannelServer(const ChannelServer&) = delete;
  ChannelServer& operator=(const ChannelServer&) = delete;

  /// An end the remote already is (an os_process argument): retired when
  /// the remote retires it, left alone when the remote closes.
  void adopt(std::shared_ptr<csp::detail::EndState<T>> end) {
    adopted_[index(end->side())].push_back(std::move(end));
  }

  /// Serves until the connection ends; the remote's HELLO comes first.
  Outcome serve() {
    FrameReader in(options_.max_payload);
    return run(std::nullopt, in);
  }
  /// Serves a connection whose HELLO an acceptor already read (see
  /// set_hello_frame); `reader` holds what followed it.
  Outcome serve(const csp::detail::Hello& hello, FrameReader reader) { return run(hello, reader); }

  /// For an acceptor that read the HELLO frame itself.
  void set_hello_frame(std::uint8_t flags, std::uint32_t seq) noexcept {
    hello_flags_ = flags;
    hello_seq_ = seq;
  }
  [[nodiscard]] const std::string& end_reason() const noexcept { return end_reason_; }

 private:
  Outcome run(std::optional<csp::detail::Hello> hello, FrameReader& in) {
    csp::detail::Frame frame;
    Outcome outcome = Outcome::lost;
    try {
      std::uint8_t hello_flags = 0;
      std::uint32_t hello_seq = 0;
      if (!hello) {
        auto r = in.next(*stream_, csp::detail::forever, frame);
        if (r != FrameReader::Result::frame)
          throw TransportError("csp: " + options_.peer + " closed the connection before its handshake");
        if (frame.header.kind != FrameKind::hello)
          throw TransportError("csp: " + options_.peer + " sent " +
                               std::string(csp::detail::frame_kind_name(frame.header.kind)) + " before HELLO");
        hello = csp::detail::decode_hello(frame.payload);
        hello_flags = frame.header.flags;
        hello_seq = frame.header.sequence;
      } else {
        hello_flags = hello_flags_;
        hello_seq = hello_seq_;
      }
      try {
        csp::detail::check_hello<T>(*hello, options_.address, home_->name());
      } catch (const TransportError& e) {
        send_text(FrameKind::hello_nak, hello_seq, 0, e.what());
        end_reason_ = e.what();
        stream_->close();
        if (options_.hosted) report_transport_error(e);
        return Outcome::rejected;
      }
      if (!(hello_flags & kHelloNoAck)) send_status(FrameKind::hello_ack, hello_seq, Status::ok);
      outcome = loop(in, frame);
    } catch (const TransportError& e) {
      end_reason_ = e.what();
      // A peer that broke the protocol hears why (it may be a confused client).
      try_send_text(FrameKind::hello_nak, 0, 0, e.what());
      if (options_.hosted) report_transport_error(e);
      outcome = Outcome::lost;
    } catch (const std::exception& e) {
      end_reason_ = e.what();
      outcome = Outcome::lost;
    }
    finish(outcome);
    return outcome;
  }

  struct Job {
    FrameKind kind = FrameKind::read_req;  // write or read_req
    std::uint32_t seq = 0;
    Deadline deadline{};
    std::optional<T> value;                // the value of a WRITE
    bool drain = false;                    // an executor's job: perform the pipelined queue
    bool lend = false;                     // an executor's job: the lending loop
    bool read_ahead = false;               // a READ_REQ that may start lending (kReadAhead)
  };
  static constexpr std::uintptr_t kStop = csp::detail::kFirstGuard + 1;

  static std::size_t index(Side side) noexcept { return side == Side::reader ? 0 : 1; }

  Outcome loop(FrameReader& in, csp::detail::Frame& frame) {
    for (;;) {
      if (!in.has_frame()) {  // before the reader may wait
        perform_batch();
        if (acks_owed_ != 0) send_owed_acks();
      }
      auto r = in.next(*stream_, csp::detail::forever, frame, /*streaming=*/true);
      if (r == FrameReader::Result::eof) {
        end_reason_ = "csp: " + options_.peer + " closed the connection without CLOSE";
        return Outcome::lost;
      }
      const FrameHeader& h = frame.header;
      if (in.partial() && h.kind != FrameKind::write)
        throw TransportError("csp: " + options_.peer + " sent an oversized " +
                             std::string(csp::detail::frame_kind_name(h.kind)) + " frame");
      const bool pipelined = h.kind == FrameKind::write && (h.flags & kWritePipelined);
      if (!pipelined) perform_batch();  // requests are performed in the order they came
      switch (h.kind) {
        case FrameKind::write: {
          Payload payload(in, *stream_, frame.payload, h.length);
          ByteReader prefix(payload.head(8));
          const std::uint64_t timeout = prefix.get_u64();
          if (pipelined && timeout != kTimeoutForever)
            throw TransportError("csp: " + options_.peer + ": a pipelined WRITE with a timeout");
          std::optional<T> value;
          try {
            if (pipelined) batch_.emplace_back(decode_payload<T>(payload, 8));
            else value.emplace(decode_payload<T>(payload, 8));
          } catch (const TransportError& e) {
            throw TransportError("csp: " + options_.peer + ": bad WRITE: " + e.what());
          }
          if (pipelined) {
            batch_seq_[batch_.size() - 1] = h.sequence;
            if (batch_.size() == kMaxPipelined) perform_batch();
          } else {
            Job job;
            job.kind = FrameKind::write;
            job.seq = h.sequence;
            job.deadline = decode_timeout(timeout);
            job.value = std::move(value);
            start(std::move(job), timeout == 0);
          }
          break;
        }
        case FrameKind::read_req: {
          if (in.partial()) throw TransportError("csp: " + options_.peer + ": oversized READ_REQ");
          if (h.flags & ~kReadAhead)
            throw TransportError("csp: " + options_.peer + ": READ_REQ with unknown flags " + std::to_string(h.flags));
          ByteReader payload(frame.payload);
          Job job;
          job.kind = FrameKind::read_req;
          job.seq = h.sequence;
          job.read_ahead = (h.flags & kReadAhead) && this->lend_word_ && home_->lendable();
          const std::uint64_t timeout = payload.get_u64();
          payload.expect_end("READ_REQ");
          job.deadline = decode_timeout(timeout);
          start(std::move(job), timeout == 0);
          break;
        }
        case FrameKind::poison:
          poison_with_reason(*home_, "poisoned by " + options_.peer);
          send_status(FrameKind::poison, h.sequence, Status::ok);
          break;
        case FrameKind::retire:
          member(h.flags);
          send_status(FrameKind::retire, h.sequence, Status::ok);
          break;
        case FrameKind::consumed:
          if (in.partial() || h.length != 0 || !this->lend_word_)
            throw TransportError("csp: " + options_.peer + ": unexpected CONSUMED frame");
          home_->lend_consumed(*this);
          break;
        case FrameKind::close:
          if (this->lend_word_) home_->lend_revoke(*this, true);  // what the remote did not take comes back first
          for (auto& side : joined_)
            for (auto& end : side) end->retire();
          joined_[0].clear();
          joined_[1].clear();
          try_send_status(FrameKind::close, h.sequence, Status::ok);
          return Outcome::closed;
        case FrameKind::ping:
          send_status(FrameKind::ping, h.sequence, Status::ok);
          break;
        default:
          throw TransportError("csp: " + options_.peer + " sent an unexpected " +
                               std::string(csp::detail::frame_kind_name(h.kind)) + " frame");
      }
    }
  }

  void member(std::uint8_t flags) {
    const Side side = (flags & kMemberWriter) ? Side::writer : Side::reader;
    if (side == Side::reader && !(flags & kMemberJoin) && this->lend_word_)
      home_->lend_revoke(*this, false);  // the remote stops reading: what it did not take comes back
    auto& joined = joined_[index(side)];
    if (flags & kMemberJoin) {
      joined.push_back(std::make_shared<csp::detail::EndState<T>>(home_, side));
      return;
    }
    if (!joined.empty()) {
      joined.back()->retire();
      joined.pop_back();
    } else if (auto& adopted = adopted_[index(side)]; !adopted.empty()) {
      for (auto& end : adopted) end->retire();
      adopted.clear();
    }
  }

  /// Performs `job` now if it can complete now, else hands it to an executor.
  void start(Job&& job, bool poll) {
    const int dir = job.kind == FrameKind::write ? 1 : 0;
    // Only a poll needs the time (hints, linger). Any other request is tried
    // with a deadline long past, which reads no clock when the partner waits.
    const auto now = poll ? csp::detail::Clock::now() : Deadline::min();
    const std::int64_t now_ns = now.time_since_epoch().count();
    if (poll) hints_.last_poll_ns[dir].store(now_ns, std::memory_order_relaxed);
    // Try at once: most operations find their partner waiting.
    Status status;
    std::optional<T> got;
    std::string error;
    const bool done = attempt(job, now, status, got, error);
    if (done || (poll && !linger(dir, now_ns))) {
      reply(job, done ? status : Status::timeout, got, error);
      return;
    }
    if (poll) job.deadline = now + kLinger;
    dispatch(std::move(job));
  }

  /// Performs the batch of pipelined WRITEs decoded so far, in order: as
  /// many as the home buffers at once under one lock (answered in batches,
  /// acks_owed_), then one that cannot go at once through start_pipelined,
  /// and so on; once the drain runs, the rest queue behind it.
  void perform_batch() {
    const std::size_t n = batch_.size();
    std::size_t i = 0;
    while (i < n) {
      pool_lock_.lock();
      if (piped_busy_) {
        const bool fits = piped_values_.size() + (n - i) <= kMaxPipelined;
        if (fits) {
          for (; i < n; ++i) {
            piped_values_.push_back(std::move(batch_[i]));  // (engaged)
            piped_seqs_.push_back(batch_seq_[i]);
          }
        }
        pool_lock_.unlock();
        if (!fits)
          throw TransportError("csp: " + options_.peer + " sent more than " + std::to_string(kMaxPipelined) +
                               " pipelined writes without waiting for their answers");
        break;
      }
      pool_lock_.unlock();
      // The drain is not running, and only this reader starts it.
      const std::size_t done = home_->buffer_now(batch_.data() + i, n - i);
      if (done != 0) {
        i += done;
        acks_owed_ += done;
        acks_owed_seq_ = batch_seq_[i - 1];
        if (acks_owed_ >= kMaxPipelined / 4) send_owed_acks();
        continue;
      }
      start_pipelined(std::move(*batch_[i]), batch_seq_[i]);
      ++i;
    }
    batch_.clear();
  }

  /// A pipelined WRITE that could not be buffered at once, with nothing
  /// queued: performed now if it can be (a reader waits), else it starts
  /// the draining executor, which performs it and those after it, in
  /// order, with no deadline.
  void start_pipelined(T&& value, std::uint32_t seq) {
    Job job;
    job.kind = FrameKind::write;
    job.seq = seq;
    job.deadline = csp::detail::forever;
    job.value.emplace(std::move(value));
    Status status;
    std::optional<T> got;
    std::string error;
    if (attempt(job, csp::detail::Clock::now(), status, got, error)) {
      if (status == Status::ok) {  // answered in a batch (wire.hpp)
        ++acks_owed_;
        acks_owed_seq_ = job.seq;
        if (acks_owed_ >= kMaxPipelined / 4) send_owed_acks();
        return;
      }
      send_owed_acks();
      reply(job, status, got, error);
      return;
    }
    send_owed_acks();  // the drain's answers come after these
    pool_lock_.lock();
    piped_busy_ = true;
    piped_values_.push_back(std::move(job.value));
    piped_seqs_.push_back(seq);
    pool_lock_.unlock();
    Job drain;
    drain.drain = true;
    dispatch(std::move(drain));
  }

  /// Answers the pipelined writes performed at once but not answered yet.
  void send_owed_acks() {
    if (acks_owed_ == 0) return;
    send_ack_batch(std::exchange(acks_owed_, 0), acks_owed_seq_);
  }

  /// One WRITE_ACK answering ok the `count` oldest unanswered pipelined
  /// writes, the last of which is `last_seq` (wire.hpp).
  void send_ack_batch(std::uint64_t count, std::uint32_t last_seq) {
    try {
      send([&](OutFrame& f) { build_frame(f, FrameKind::write_ack, last_seq, kAckBatch, &count); });
    } catch (const TransportError&) {
      // The remote is gone; the reader sees the broken stream and cleans up.
    }
  }

  /// The draining executor: performs the queued pipelined writes in order,
  /// taking the whole queue at a time, until it is empty. As many as fit
  /// are buffered at once under one lock (buffer_now); a write that does
  /// not fit is performed with no deadline (it waits for room). Writes
  /// that succeed are answered in batches; the batch goes out before the
  /// drain waits and before a failure's answer, so answers keep the writes'
  /// order and none is held back by a blocked write.
  void drain_pipelined() {
    std::vector<std::optional<T>> values;  // the part of the queue being performed (engaged)
    std::vector<std::uint32_t> seqs;  // their sequences
    values.reserve(kMaxPipelined);
    seqs.reserve(kMaxPipelined);
    std::uint64_t owed = 0;      // writes performed, not answered yet
    std::uint32_t owed_seq = 0;  // the sequence of the last of them
    auto flush = [&] {
      if (owed != 0) send_ack_batch(std::exchange(owed, 0), owed_seq);
    };
    for (;;) {
      pool_lock_.lock();
      if (piped_values_.empty()) {
        piped_busy_ = false;
        pool_lock_.unlock();
        return;
      }
      values.swap(piped_values_);
      seqs.swap(piped_seqs_);
      piped_active_ = true;
      pool_lock_.unlock();
      const std::size_t n = values.size();
      std::optional<Job> failed;  // the last write failed: answered after the rest
      Status failed_status = Status::ok;
      std::string failed_error;
      for (std::size_t i = 0; i < n;) {
        if (const std::size_t done = home_->buffer_now(values.data() + i, n - i); done != 0) {
          i += done;
          owed += done;
          owed_seq = seqs[i - 1];
          if (owed >= kMaxPipelined / 4 && i < n) flush();
          continue;
        }
        flush();  // the remote may be waiting for these to send more
        Job job;
        job.kind = FrameKind::write;
        job.seq = seqs[i];
        job.value = std::move(values[i]);
        ++i;
        Status status = Status::timeout;
        std::optional<T> got;
        std::string error;
        if (!attempt(job, csp::detail::forever, status, got, error)) status = Status::timeout;
        if (status == Status::ok) {
          ++owed;
          owed_seq = job.seq;
        } else if (i < n) {
          reply(job, status, got, error);  // later writes are unanswered: no CLOSE can follow yet
        } else {
          failed.emplace(std::move(job));
          failed_status = status;
          failed_error = std::move(error);
        }
      }
      values.clear();
      seqs.clear();
      // Inactive before the last answers (a CLOSE may follow them at once),
      // but still draining (piped_busy_): newer writes queue behind.
      pool_lock_.lock();
      piped_active_ = false;
      pool_lock_.unlock();
      flush();
      if (failed) reply(*failed, failed_status, std::optional<T>{}, failed_error);
    }
  }

  bool linger(int dir, std::int64_t now_ns) const noexcept {
    if (dir != 0) return false;  // only reads linger
    const std::int64_t other = hints_.last_poll_ns[1 - dir].load(std::memory_order_relaxed);
    return other != 0 && now_ns - other <= std::chrono::duration_cast<std::chrono::nanoseconds>(kPollWindow).count();
  }

  /// One try of `job` with `deadline`; true when it completed (status set).
  bool attempt(Job& job, Deadline deadline, Status& status, std::optional<T>& got, std::string& error) {
    try {
      if (job.kind == FrameKind::write) {
        if (!home_->write_until(*job.value, deadline)) return false;
      } else {
        got = home_->read_until(deadline);
        if (!got) return false;
      }
      status = Status::ok;
    } catch (const ChannelPoisoned&) {
      status = Status::poisoned;
    } catch (const ChannelRetired&) {
      status = Status::retired;
    } catch (const std::exception& e) {
      status = Status::error;
      error = e.what();
    }
    return true;
  }

  void reply(const Job& job, Status status, const std::optional<T>& got, const std::string& error) {
    if (job.read_ahead && (status == Status::ok || status == Status::timeout)) {
      reply_read_ahead(job, status, got);
      return;
    }
    try {
      if (status == Status::error) {
        send_text(job.kind == FrameKind::write ? FrameKind::write_ack : FrameKind::read_data, job.seq,
                  static_cast<std::uint8_t>(status), error);
      } else if (job.kind == FrameKind::read_req && status == Status::ok) {
        send([&](OutFrame& f) {
          build_value_frame(f, FrameKind::read_data, job.seq, 0, nullptr, *got, options_.max_payload);
        });
      } else if (job.kind == FrameKind::write && status == Status::ok && home_->capacity() != 0) {
        const std::uint64_t capacity = home_->capacity();  // the remote may pipeline (wire.hpp)
        send([&](OutFrame& f) { build_frame(f, FrameKind::write_ack, job.seq, kAckBuffered, &capacity); });
      } else {
        send_status(job.kind == FrameKind::write ? FrameKind::write_ack : FrameKind::read_data, job.seq, status);
      }
    } catch (const TransportError&) {
      // The remote is gone; the reader sees the broken stream and cleans up.
    }
  }

  // ---- read-ahead ----

  /// Answers a READ_REQ(kReadAhead) that completed, lending from now on if
  /// the channel lets us (kLendOn, then the lending executor runs).
  void reply_read_ahead(const Job& job, Status status, const std::optional<T>& got) {
    const std::uint64_t epoch = home_->lend_attach(*this);
    const std::uint8_t flags = static_cast<std::uint8_t>(status) | (epoch ? kLendOn : 0);
    try {
      send([&](OutFrame& f) {
        if (got) build_value_frame(f, FrameKind::read_data, job.seq, flags, epoch ? &epoch : nullptr, *got,
                                   options_.max_payload);
        else build_frame(f, FrameKind::read_data, job.seq, flags, epoch ? &epoch : nullptr);
      });
    } catch (const TransportError&) {
      return;  // the remote is gone; the reader sees the broken stream and cleans up
    }
    if (epoch) start_lending();
  }

  void start_lending() {
    pool_lock_.lock();
    ++lend_generation_;
    if (lend_running_ || stopping_) {
      pool_lock_.unlock();
      return;
    }
    lend_running_ = true;
    pool_lock_.unlock();
    Job job;
    job.lend = true;
    dispatch(std::move(job));  // not counted in busy_
  }

  /// Borrower: appends `value` to the LEND frame being built in lend_out_
  /// (under the home's lock; one frame per batch, see wire.hpp).
  bool encode_lent(const T& value, std::uint32_t epoch, std::uint16_t index) override {
    if (lend_out_.empty()) {  // the batch's first value: the frame and its fixed fields
      lend_start_ = csp::detail::begin_frame(lend_out_, FrameKind::lend, 0, 0, kLendBatch);
      lend_out_.put_u32(epoch);
      lend_out_.put_u32(index);
    }
    const std::size_t at = lend_out_.size();
    if constexpr (wire_detail::bulk_bytes<T>::value) {
      // The codec's bytes (u32 count, the elements) in one piece, copied: the
      // value may be gone (revoked and read) when the batch is sent.
      const std::size_t bytes = value.size() * sizeof(typename T::value_type);
      if (bytes <= 0xFFFFFFFFu - 4) {
        std::byte* p = lend_out_.extend(8 + bytes);
        csp::detail::frame_bytes::store_u32(p, static_cast<std::uint32_t>(4 + bytes));
        csp::detail::frame_bytes::store_u32(p + 4, static_cast<std::uint32_t>(value.size()));
        if (bytes != 0) std::memcpy(p + 8, value.data(), bytes);
      }
    }
    if (lend_out_.size() == at) {
      lend_out_.extend(4);  // the value's length, patched below
      csp::codec<T>::encode(lend_out_, value);
      std::byte length[4];
      csp::detail::frame_bytes::store_u32(length, static_cast<std::uint32_t>(lend_out_.size() - at - 4));
      lend_out_.patch(at, length, 4);
    }
    // Checked here, where a throw undoes the batch (end_frame, after the
    // lock, must not fail).
    const std::size_t payload = lend_out_.size() - lend_start_ - csp::detail::frame_header_size;
    if (payload > options_.max_payload || lend_out_.size() - at - 4 > 0xFFFFFFFFu)
      throw TransportError("csp: cannot lend a value of " + std::to_string(lend_out_.size() - at - 4) +
                           " encoded bytes: the frame limit is " + std::to_string(options_.max_payload));
    return lend_out_.size() < kLendBatchBytes;  // copied under the home's lock: keep batches short
  }
  static constexpr std::size_t kLendBatchBytes = 256 * 1024;

  /// The lending executor: lends until the home detaches us (then LEND_END).
  void lend_loop() {
    std::uint32_t ended = 0;  // the last epoch we sent LEND_END for
    pool_lock_.lock();
    std::uint64_t generation = lend_generation_;
    pool_lock_.unlock();
    for (;;) {
      csp::detail::Waiter w("lend", home_->name(), false);
      lend_out_.clear();
      LendResult r;
      try {
        r = home_->lend(*this, w);
      } catch (const std::exception&) {
        // A value that cannot be sent (over the frame limit): stop lending;
        // the remote's READ_REQ then reads it and hears the error.
        home_->lend_revoke(*this, false);
        lend_out_.clear();  // the undone batch's bytes
        r = home_->lend(*this, w);
      }
      if (r.kind == LendResult::lent) {
        csp::detail::end_frame(lend_out_, lend_start_, options_.max_payload);  // fits: encode_lent checked
        try {
          send_bytes(lend_out_);
        } catch (const TransportError&) {
          break;  // the remote is gone: the reader revokes when it sees it
        }
        continue;
      }
      if (r.kind == LendResult::empty) {
        csp::detail::wait(w, csp::detail::forever);
        continue;
      }
      // Lending ended (or, drained, nothing more will come): tell the remote.
      if (r.epoch != 0 && r.epoch != ended) {
        ended = r.epoch;
        const std::uint32_t epoch = r.epoch;
        try {
          send([&](OutFrame& f) {
            const std::size_t start = csp::detail::begin_frame(f.head, FrameKind::lend_end, 0, 0, 0);
            f.head.put_u32(epoch);
            csp::detail::end_frame(f.head, start, 0xFFFFFFFFu);
          });
        } catch (const TransportError&) {
          break;
        }
      }
      pool_lock_.lock();
      if (generation != lend_generation_ && !stopping_ && r.kind == LendResult::detached) {
        generation = lend_generation_;  // attached again meanwhile
        pool_lock_.unlock();
        continue;
      }
      lend_running_ = false;
      pool_lock_.unlock();
      return;
    }
    pool_lock_.lock();
    lend_running_ = false;
    pool_lock_.unlock();
  }

  // ---- executors ----

  void dispatch(Job&& job) {
    pool_lock_.lock();
    if (!job.lend) ++busy_;  // lending is no operation a close could leave waiting
    if (!idle_.empty()) {
      Executor* e = idle_.back();
      idle_.pop_back();
      csp::detail::Waiter* w = std::exchange(e->parked, nullptr);
      pool_lock_.unlock();
      e->job = std::move(job);
      if (w->try_select(csp::detail::kWoken)) w->wake();
      return;
    }
    ++executors_;
    pool_lock_.unlock();
    auto first = std::make_shared<Job>(std::move(job));
    start_coroutine("server of '" + home_->name() + "' for " + options_.peer,
                    [this, first] { executor_main(std::move(*first)); }, nullptr);
  }

  struct Executor {
    Job job;
    csp::detail::Waiter* parked = nullptr;  // guarded by pool_lock_
  };

  void executor_main(Job first) {
    Executor self;
    self.job = std::move(first);
    for (;;) {
      if (self.job.drain) {
        pool_lock_.lock();
        --busy_;  // a drain counts as piped_active_ while it holds writes
        pool_lock_.unlock();
        drain_pipelined();
      } else if (self.job.lend) {
        lend_loop();
      } else {
        Status status = Status::timeout;
        std::optional<T> got;
        std::string error;
        if (!attempt(self.job, self.job.deadline, status, got, error)) status = Status::timeout;
        // Not busy once the operation is over: a CLOSE that follows the reply
        // must not find this executor still counted.
        pool_lock_.lock();
        --busy_;
        pool_lock_.unlock();
        reply(self.job, status, got, error);
      }
      self.job.value.reset();
      csp::detail::Waiter w("idle", {}, false);
      pool_lock_.lock();
      if (stopping_) break;
      self.parked = &w;
      idle_.push_back(&self);
      pool_lock_.unlock();
      if (csp::detail::wait(w, csp::detail::forever) == kStop) {
        pool_lock_.lock();
        break;
      }
    }
    // pool_lock_ held
    csp::detail::Waiter* joiner = nullptr;
    if (--executors_ == 0) joiner = std::exchange(all_done_, nullptr);
    pool_lock_.unlock();
    if (joiner && joiner->try_select(csp::detail::kWoken)) joiner->wake();  // `this` may be gone after this
  }

  void stop_executors() {
    pool_lock_.lock();
    stopping_ = true;
    std::vector<Executor*> idle;
    idle.swap(idle_);
    std::vector<csp::detail::Waiter*> wake;
    for (Executor* e : idle) wake.push_back(std::exchange(e->parked, nullptr));
    pool_lock_.unlock();
    for (auto* w : wake)
      if (w->try_select(kStop)) w->wake();
    pool_lock_.lock();
    if (executors_ == 0) {
      pool_lock_.unlock();
      return;
    }
    csp::detail::Waiter w("join", {}, false);
    all_done_ = &w;
    pool_lock_.unlock();
    csp::detail::wait(w, csp::detail::forever);
  }

  void finish(Outcome outcome) {
    // Pipelined writes read before the end are performed, as if each had
    // been performed when it came (their answers cannot be sent any more).
    try {
      perform_batch();
    } catch (const TransportError&) {
      batch_.clear();  // (a value was only ever moved from on success)
    }
    // What the remote did not take comes back (exactly: the lend word
    // says what it took), and we never lend again; the lending executor wakes.
    if (this->lend_word_) home_->lend_revoke(*this, true);
    std::size_t busy;
    {
      std::lock_guard lock(pool_lock_);
      busy = busy_ + (piped_active_ || !piped_values_.empty() ? 1 : 0);
    }
    const bool holds = !joined_[0].empty() || !joined_[1].empty() || !adopted_[0].empty() || !adopted_[1].empty();
    // A vanished peer poisons what it took part in; so does a close that
    // left operations waiting (nothing else could ever end them).
    if ((outcome == Outcome::lost && holds) || busy > 0) {
      std::string reason = "csp: channel '" + home_->name() + "': lost " + options_.peer;
      if (!end_reason_.empty()) reason += " (" + end_reason_ + ")";
      poison_with_reason(*home_, reason);
    }
    stop_executors();
    for (auto& side : joined_)
      for (auto& end : side) end->retire();
    joined_[0].clear();
    joined_[1].clear();
    adopted_[0].clear();
    adopted_[1].clear();
    stream_->close();
  }

  // ---- sending ----

  template <class Build>
  void send(Build&& build) {
    send_mutex_.lock();
    try {
      out_.clear();
      OutFrame f{out_};
      build(f);
      if (f.tail.size) {
        ConstBuffer parts[2] = {{out_.data(), out_.size()}, f.tail};
        stream_->write_all_v(parts, 2);
      } else {
        stream_->write_all(out_.data(), out_.size());
      }
    } catch (...) {
      send_mutex_.unlock();
      throw;
    }
    send_mutex_.unlock();
  }
  /// Sends frames already built in `bytes`.
  void send_bytes(const ByteWriter& bytes) {
    send_mutex_.lock();
    try {
      stream_->write_all(bytes.data(), bytes.size());
    } catch (...) {
      send_mutex_.unlock();
      throw;
    }
    send_mutex_.unlock();
  }
  void send_status(FrameKind kind, std::uint32_t seq, Status status) {
    send([&](OutFrame& f) { build_frame(f, kind, seq, static_cast<std::uint8_t>(status)); });
  }
  void try_send_status(FrameKind kind, std::uint32_t seq, Status status) noexcept {
    try {
      send_status(kind, seq, status);
    } catch (...) {
    }
  }
  void send_text(FrameKind kind, std::uint32_t seq, std::uint8_t flags, const std::string& text) {
    send([&](OutFrame& f) { build_text_frame(f, kind, seq, flags, text); });
  }
  void try_send_text(FrameKind kind, std::uint32_t seq, std::uint8_t flags, const std::string& text) noexcept {
    try {
      send_text(kind, seq, flags, text);
    } catch (...) {
    }
  }

  std::shared_ptr<csp::detail::ChannelImpl<T>> home_;  // the channel served
  std::unique_ptr<ByteStream> stream_;                 // the connection
  Options options_;
  PollHints& hints_;                                    // shared by every server of home_
  std::uint8_t hello_flags_ = 0;                        // HELLO read by an acceptor
  std::uint32_t hello_seq_ = 0;
  std::string end_reason_;                              // why the connection ended
  // Membership held for the remote; touched by the reader only.
  std::vector<std::shared_ptr<csp::detail::EndState<T>>> joined_[2];   // made by JOIN requests
  std::vector<std::shared_ptr<csp::detail::EndState<T>>> adopted_[2];  // os_process argument ends

  ParkingMutex send_mutex_;  // serialises replies; guards out_
  ByteWriter out_;           // reply buffer, reused

  csp::detail::SpinLock pool_lock_;       // guards the executor pool below
  std::vector<Executor*> idle_;           // parked executors
  std::size_t executors_ = 0;             // live executor coroutines
  std::size_t busy_ = 0;                  // executors performing an operation
  bool stopping_ = false;                 // no executor parks again
  std::vector<std::optional<T>> piped_values_;  // pipelined writes queued for the drain (engaged; at most kMaxPipelined)
  std::vector<std::uint32_t> piped_seqs_; // their sequences
  std::vector<std::optional<T>> batch_;   // pipelined WRITE values read, not performed yet (engaged; reader only)
  std::uint32_t batch_seq_[kMaxPipelined] = {};  // their sequences (reader only)
  std::uint64_t acks_owed_ = 0;           // pipelined writes done by the reader, not answered yet (reader only)
  std::uint32_t acks_owed_seq_ = 0;       // the sequence of the last of them
  bool piped_busy_ = false;               // an executor drains piped_values_ (then new ones queue)
  bool piped_active_ = false;             // the drain holds pipelined writes not performed or answered yet
  bool lend_running_ = false;             // an executor runs lend_loop
  std::uint64_t lend_generation_ = 0;     // attaches so far (start_lending)
  ByteWriter lend_out_;                   // the LEND frame being built (the lending executor's)
  std::size_t lend_start_ = 0;            // where in lend_out_ that frame starts
  csp::detail::Waiter* all_done_ = nullptr;  // the reader waiting for executors_ == 0
};

}  // namespace csp::transport_detail
