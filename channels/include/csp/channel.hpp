// csp/channel.hpp: csp::Channel<T> and its ends, csp::Reader<T> / csp::Writer<T>.
//
//   csp::Channel<int> ch;                        // any-to-any rendezvous
//   csp::Channel<int> q{csp::buffer(64)};        // FIFO buffer of 64
//   csp::Channel<int> pq{csp::priority_buffer(8)};
//   csp::Channel<int> named{"jobs", csp::buffer(4), csp::transport::pipe};
//   csp::Reader<int> in = ch.reader();  // or +ch
//   csp::Writer<int> out = ch.writer(); // or -ch
//
// Channel<T> is a cheap shared handle and is no member of either side. Each
// reader()/writer() call makes a new end, a member of its side; copies of an
// end are the same end: it leaves its side when retired through any copy or
// when its last copy is destroyed. Once every writer has left, readers get
// ChannelRetired after the buffer is drained; once every reader has left,
// writers get ChannelRetired. A side that never had a member has not
// retired. Poison is permanent, wins over retire, and makes every blocked
// and later operation throw ChannelPoisoned.
//
// Thread-safety: any end may be used from any process, thread or main at
// the same time; using an end that was retired throws ChannelRetired.
#pragma once

#include <chrono>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <csp/buffer.hpp>
#include <csp/channel_impl.hpp>
#include <csp/trace.hpp>

namespace csp {

template <class T>
class Channel;

namespace detail {

/// One end: shared by all copies of a Reader/Writer.
template <class T>
class EndState {
 public:
  EndState(std::shared_ptr<ChannelImpl<T>> channel, Side side) : channel_(std::move(channel)), side_(side) {
    channel_->join(side_);
  }
  ~EndState() {
    if (!retired_.exchange(true, std::memory_order_acq_rel)) {
      try {
        channel_->leave(side_);
      } catch (...) {  // a transport that cannot reach its peer: nothing to tell
      }
    }
  }
  EndState(const EndState&) = delete;
  EndState& operator=(const EndState&) = delete;

  /// Leaves the side (once). Later operations through this end throw.
  void retire() {
    if (!retired_.exchange(true, std::memory_order_acq_rel)) channel_->leave(side_);
  }
  /// The implementation, after checking this end may still be used and
  /// settling the caller's pipelined writes (csp/detail/settle.hpp).
  ChannelImpl<T>& use() const {
    settle_writes();
    if (retired_.load(std::memory_order_relaxed)) [[unlikely]]
      throw_retired_end();
    return *channel_;
  }
  /// use() for a blocking write: pipelined writes on this channel stay.
  ChannelImpl<T>& use_to_write() const {
    if (g_unsettled_contexts.load(std::memory_order_relaxed) != 0) [[unlikely]]
      settle_writes_slow(channel_->pipeline());
    if (retired_.load(std::memory_order_relaxed)) [[unlikely]]
      throw_retired_end();
    return *channel_;
  }
  [[nodiscard]] ChannelImpl<T>& impl() const noexcept { return *channel_; }
  [[nodiscard]] const std::shared_ptr<ChannelImpl<T>>& channel() const noexcept { return channel_; }
  /// Replaces the implementation (an os_process child reaching its parent's
  /// channel through a transport). Only before any use in this process.
  void rebind(std::shared_ptr<ChannelImpl<T>> channel) noexcept { channel_ = std::move(channel); }
  [[nodiscard]] Side side() const noexcept { return side_; }
  [[nodiscard]] bool retired() const noexcept { return retired_.load(std::memory_order_acquire); }

 private:
  [[noreturn]] __attribute__((noinline, cold)) void throw_retired_end() const {
    if (channel_->poisoned()) channel_->throw_poisoned();
    throw ChannelRetired("csp: channel '" + channel_->name() + "': this " +
                         (side_ == Side::reader ? "reader" : "writer") + " end has retired");
  }

  std::shared_ptr<ChannelImpl<T>> channel_;  // the channel this end belongs to
  const Side side_;
  std::atomic<bool> retired_{false};          // left its side already
};

inline Deadline deadline_after(std::chrono::nanoseconds d) {
  auto now = Clock::now();
  return d >= forever - now ? forever : now + std::chrono::ceil<Clock::duration>(d);
}

}  // namespace detail

/// The reading end of a Channel<T>.
template <class T>
class Reader {
 public:
  using value_type = T;
  Reader() = default;

  /// Blocks until a value arrives. Throws ChannelPoisoned, or
  /// ChannelRetired once every writer left and the buffer is empty.
  T read() { return std::move(*end_->use().read_until(detail::forever)); }
  /// A value if one is ready now; never blocks.
  std::optional<T> try_read() { return end_->use().read_until(detail::Clock::now()); }
  /// Waits at most `d`; nullopt if nothing came (the seeds' get(timeout)).
  template <class Rep, class Period>
  std::optional<T> read_for(std::chrono::duration<Rep, Period> d) {
    return end_->use().read_until(detail::deadline_after(d));
  }
  std::optional<T> read_until(std::chrono::steady_clock::time_point t) { return end_->use().read_until(t); }
  T operator()() { return read(); }  // PyCSP: cin()

  void poison() { end_->impl().poison(); }
  void retire() { end_->retire(); }
  [[nodiscard]] const std::string& name() const { return end_->impl().name(); }
  [[nodiscard]] explicit operator bool() const noexcept { return end_ != nullptr; }

  /// `for (T v : reader)` reads until the writer side retires.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;
    iterator() = default;
    explicit iterator(Reader* r) : reader_(r) { advance(); }
    T& operator*() { return *value_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const { return !value_.has_value(); }

   private:
    void advance() {
      try {
        value_.emplace(reader_->read());
      } catch (const ChannelRetired&) {
        value_.reset();
      }
    }
    Reader* reader_ = nullptr;
    std::optional<T> value_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

  // For transports and alternation.
  [[nodiscard]] const std::shared_ptr<detail::EndState<T>>& end_state() const noexcept { return end_; }

 private:
  friend class Channel<T>;
  explicit Reader(std::shared_ptr<detail::EndState<T>> end) : end_(std::move(end)) {}
  std::shared_ptr<detail::EndState<T>> end_;  // shared by copies: one end
};

/// The writing end of a Channel<T>.
template <class T>
class Writer {
 public:
  using value_type = T;
  Writer() = default;

  /// Blocks until a reader took the value or it was buffered. An rvalue
  /// is moved from only when the write completes: on an exception (poison,
  /// retire) the caller still has it.
  void write(T&& value) { end_->use_to_write().write(value); }
  void write(const T& value) {
    T copy(value);
    write(std::move(copy));
  }
  /// Sends only if a reader waits or the buffer has room; never blocks.
  /// On false the value was not sent (and an rvalue was not moved from).
  bool try_write(T&& value) { return end_->use().write_until(value, detail::Clock::now()); }
  bool try_write(const T& value) {
    T copy(value);
    return try_write(std::move(copy));
  }
  /// Waits at most `d` (the seeds' put(timeout)); false if not sent, and
  /// then an rvalue was not moved from.
  template <class Rep, class Period>
  bool write_for(T&& value, std::chrono::duration<Rep, Period> d) {
    return end_->use().write_until(value, detail::deadline_after(d));
  }
  template <class Rep, class Period>
  bool write_for(const T& value, std::chrono::duration<Rep, Period> d) {
    T copy(value);
    return write_for(std::move(copy), d);
  }
  bool write_until(T&& value, std::chrono::steady_clock::time_point t) { return end_->use().write_until(value, t); }
  bool write_until(const T& value, std::chrono::steady_clock::time_point t) {
    T copy(value);
    return write_until(std::move(copy), t);
  }
  void operator()(T&& value) { write(std::move(value)); }  // PyCSP: cout(v)
  void operator()(const T& value) { write(value); }

  void poison() { end_->impl().poison(); }
  void retire() { end_->retire(); }
  [[nodiscard]] const std::string& name() const { return end_->impl().name(); }
  [[nodiscard]] explicit operator bool() const noexcept { return end_ != nullptr; }

  [[nodiscard]] const std::shared_ptr<detail::EndState<T>>& end_state() const noexcept { return end_; }

 private:
  friend class Channel<T>;
  explicit Writer(std::shared_ptr<detail::EndState<T>> end) : end_(std::move(end)) {}
  std::shared_ptr<detail::EndState<T>> end_;  // shared by copies: one end
};

/// A typed channel: a cheap shared handle to the channel's state.
template <class T>
class Channel {
 public:
  using value_type = T;

  /// Options in any order: a name (string), csp::buffer(n) or
  /// csp::priority_buffer(n, less), a csp::transport.
  template <class... Options>
    requires((!std::is_same_v<std::remove_cvref_t<Options>, Channel>) && ...)
  explicit Channel(Options&&... options) {
    std::string name;
    std::optional<detail::ChannelBuffer<T>> buffer;
    transport kind = transport::automatic;
    (apply_option(std::forward<Options>(options), name, buffer, kind), ...);
    if (buffer) impl_ = std::make_shared<detail::InprocChannel<T>>(std::move(name), std::move(*buffer));
    else impl_ = std::make_shared<detail::InprocChannel<T>>(std::move(name));
    impl_->set_preferred_transport(kind);
  }
  /// Wraps an implementation (transports).
  explicit Channel(std::shared_ptr<detail::ChannelImpl<T>> impl) : impl_(std::move(impl)) {}

  /// A new reader end (a new member of the reader side).
  Reader<T> reader() const { return Reader<T>(std::make_shared<detail::EndState<T>>(impl_, detail::Side::reader)); }
  /// A new writer end (a new member of the writer side).
  Writer<T> writer() const { return Writer<T>(std::make_shared<detail::EndState<T>>(impl_, detail::Side::writer)); }
  Reader<T> operator+() const { return reader(); }
  Writer<T> operator-() const { return writer(); }

  /// Poisons the channel: every blocked and later operation throws.
  void poison() { impl_->poison(); }
  [[nodiscard]] const std::string& name() const { return impl_->name(); }
  [[nodiscard]] const std::shared_ptr<detail::ChannelImpl<T>>& impl() const noexcept { return impl_; }

  /// Serves this channel at `address` for other programs (tcp://host:port/name,
  /// unix:///path/name, shm://name, pipe:///path). Defined in <csp/transport/address.hpp>.
  static Channel host(std::string_view address);
  /// Joins a channel served at `address`; retries until `timeout`, then throws
  /// TransportError. Defined in <csp/transport/address.hpp>.
  static Channel connect(std::string_view address,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

 private:
  template <class O>
  static void apply_option(O&& o, std::string& name, std::optional<detail::ChannelBuffer<T>>& buffer,
                           transport& kind) {
    using D = std::decay_t<O>;
    if constexpr (std::is_same_v<D, BufferSpec>) {
      if (o.capacity > 0) buffer.emplace(o.capacity);
    } else if constexpr (requires { o.capacity; o.less; }) {
      buffer.emplace(o.capacity == 0 ? 1 : o.capacity, o.less);
    } else if constexpr (std::is_same_v<D, transport>) {
      kind = o;
    } else {
      static_assert(std::is_convertible_v<O, std::string_view>,
                    "Channel options: a name, csp::buffer(n), csp::priority_buffer(n), csp::transport");
      name = std::string(std::string_view(o));
    }
  }

  std::shared_ptr<detail::ChannelImpl<T>> impl_;
};

// Hooks for csp::process (found by argument-dependent lookup).
template <class T>
void csp_poison(Reader<T>& r) {
  if (r) r.poison();
}
template <class T>
void csp_poison(Writer<T>& w) {
  if (w) w.poison();
}
template <class T>
void csp_retire(Reader<T>& r) {
  if (r) r.retire();
}
template <class T>
void csp_retire(Writer<T>& w) {
  if (w) w.retire();
}
template <class T>
void csp_describe(const Reader<T>& r, std::vector<detail::EndInfo>& out) {
  if (r) out.push_back({r.end_state()->channel().get(), r.name(), false});
}
template <class T>
void csp_describe(const Writer<T>& w, std::vector<detail::EndInfo>& out) {
  if (w) out.push_back({w.end_state()->channel().get(), w.name(), true});
}
template <class T>
Reader<T> csp_fresh(const Reader<T>& r) {
  return r ? Channel<T>(r.end_state()->channel()).reader() : r;
}
template <class T>
Writer<T> csp_fresh(const Writer<T>& w) {
  return w ? Channel<T>(w.end_state()->channel()).writer() : w;
}

}  // namespace csp
