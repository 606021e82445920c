// csp/alternation.hpp: choosing between channels (PyCSP's Alternation,
// occam's ALT, Go's select).
//
//   auto s = csp::PriSelect(csp::input(r1),
//                           csp::input(r2, [](int v) { ... }),   // optional action
//                           csp::output(w, 42),                  // output guard
//                           csp::timeout(10ms),
//                           csp::skip());
//   if (s.index == 0) use(s.value<int>());
//
// - PriSelect takes the first ready guard in argument order; AltSelect any
//   ready guard (random order); FairSelect rotates the priority across calls
//   with the same channels (and an Alternation object across its own calls).
// - Every guard takes an optional action and `.when(cond)` (occam's
//   `cond & c ? x`): a disabled guard is ignored.
// - Exactly one guard fires, and completely: a value read is in the result
//   (never lost), an output guard's value is delivered once or not at all.
// - A poisoned guard channel makes the select throw ChannelPoisoned; retired
//   guards are ignored until every channel guard has retired, then it throws
//   ChannelRetired.
//
// How (Go's selectgo, three passes): lock every guard channel in id order,
// poll the guards in priority order; if none is ready, enqueue one op per
// guard, all sharing one Waiter, and park; the first peer to win the
// Waiter's CAS completes that guard; on waking, lock again and unlink the
// rest. Channels that cannot be locked from here (cross-process ones) are
// polled instead, with a back-off sleep between rounds.
#pragma once

#include <algorithm>
#include <any>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <csp/channel.hpp>
#include <csp/runtime.hpp>

namespace csp {

/// What a select chose.
class Selected {
 public:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  /// Index of the guard that fired, in the order given.
  std::size_t index = none;

  /// The value an input guard read. Throws csp::Error if guard `index` is
  /// not an input guard of T.
  template <class T>
  T& value() {
    if (T* v = std::any_cast<T>(&value_)) return *v;
    throw Error(std::string("csp: select: guard ") + std::to_string(index) + " holds no value of type " +
                typeid(T).name());
  }
  [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }

  std::any value_;  // the value read by an input guard (set by the guard)
};

namespace detail {

struct NoAction {};

class Guard {
 public:
  enum class Kind : std::uint8_t { input, output, timeout, skip };
  explicit Guard(Kind kind) : kind_(kind) {}
  virtual ~Guard() = default;

  /// The channel, for input/output guards.
  virtual ChannelCore* channel() const noexcept { return nullptr; }
  /// Called at the start of each select (output guards refresh their value).
  virtual void prepare() {}
  /// Under the channel lock: complete now if possible.
  virtual Poll poll_locked(Waiter*& /*wake*/) { return Poll::not_ready; }
  virtual void enqueue_locked(Waiter& /*w*/, std::uintptr_t /*token*/) {}
  virtual void unlink_locked() noexcept {}
  /// Without a lock (channels that are not lockable): try once, now.
  virtual Poll try_now() { return Poll::not_ready; }
  /// The guard fired: hand its value to `result` and run its action.
  virtual void fire(Selected& result) = 0;

  const Kind kind_;
  bool enabled_ = true;                 // .when(cond)
  std::chrono::nanoseconds timeout_{};  // timeout guards
};

template <class A, class... Args>
void run_action(A& action, Args&&... args) {
  if constexpr (std::is_same_v<A, NoAction>) {
    (void)action;
  } else if constexpr (std::is_invocable_v<A&, Args...>) {
    std::invoke(action, std::forward<Args>(args)...);
  } else {
    std::invoke(action);
  }
}

template <class G>
struct WhenMixin {
  /// Enables the guard only if `condition` holds (occam's precondition).
  G&& when(bool condition) && {
    static_cast<G&>(*this).enabled_ = condition;
    return std::move(static_cast<G&>(*this));
  }
  G& when(bool condition) & {
    static_cast<G&>(*this).enabled_ = condition;
    return static_cast<G&>(*this);
  }
};

}  // namespace detail

template <class T, class Action = detail::NoAction>
class InputGuard final : public detail::Guard, public detail::WhenMixin<InputGuard<T, Action>> {
 public:
  InputGuard(Reader<T> reader, Action action)
      : Guard(Kind::input), reader_(std::move(reader)), action_(std::move(action)) {}
  InputGuard(InputGuard&& o) noexcept
      : Guard(Kind::input), reader_(std::move(o.reader_)), action_(std::move(o.action_)) {
    enabled_ = o.enabled_;
  }

  detail::ChannelCore* channel() const noexcept override { return &impl(); }
  detail::Poll poll_locked(detail::Waiter*& wake) override {
    if (reader_.end_state()->retired()) return detail::Poll::retired;
    return impl().poll_read_locked(slot_, wake);
  }
  void enqueue_locked(detail::Waiter& w, std::uintptr_t token) override {
    op_ = detail::Op{&w, token, &slot_};
    impl().enqueue_read_locked(op_);
  }
  void unlink_locked() noexcept override { impl().unlink_locked(op_); }
  detail::Poll try_now() override {
    if (reader_.end_state()->retired()) return detail::Poll::retired;
    try {
      slot_ = impl().read_until(detail::Clock::now());
    } catch (const ChannelRetired&) {
      return detail::Poll::retired;
    }
    return slot_ ? detail::Poll::ready : detail::Poll::not_ready;
  }
  void fire(Selected& result) override {
    result.value_ = std::move(*slot_);
    slot_.reset();
    detail::run_action(action_, *std::any_cast<T>(&result.value_));
  }

 private:
  detail::ChannelImpl<T>& impl() const noexcept { return reader_.end_state()->impl(); }
  Reader<T> reader_;
  Action action_;
  std::optional<T> slot_;  // where a writer puts the value
  detail::Op op_;          // this guard's registration while parked
};

template <class T, class Action = detail::NoAction>
class OutputGuard final : public detail::Guard, public detail::WhenMixin<OutputGuard<T, Action>> {
 public:
  OutputGuard(Writer<T> writer, T value, Action action)
      : Guard(Kind::output), writer_(std::move(writer)), value_(std::move(value)), action_(std::move(action)) {}
  OutputGuard(OutputGuard&& o) noexcept
      : Guard(Kind::output), writer_(std::move(o.writer_)), value_(std::move(o.value_)), action_(std::move(o.action_)) {
    enabled_ = o.enabled_;
  }

  /// Keeps a copy so an Alternation can offer the same value every time.
  void keep_for_reuse() { original_.emplace(value_); }
  void prepare() override {
    if (original_) value_ = *original_;
  }
  detail::ChannelCore* channel() const noexcept override { return &impl(); }
  detail::Poll poll_locked(detail::Waiter*& wake) override {
    if (writer_.end_state()->retired()) return detail::Poll::retired;
    return impl().poll_write_locked(value_, wake);
  }
  void enqueue_locked(detail::Waiter& w, std::uintptr_t token) override {
    op_ = detail::Op{&w, token, &value_};
    impl().enqueue_write_locked(op_);
  }
  void unlink_locked() noexcept override { impl().unlink_locked(op_); }
  detail::Poll try_now() override {
    if (writer_.end_state()->retired()) return detail::Poll::retired;
    try {
      return impl().write_until(value_, detail::Clock::now()) ? detail::Poll::ready : detail::Poll::not_ready;
    } catch (const ChannelRetired&) {
      return detail::Poll::retired;
    }
  }
  void fire(Selected&) override { detail::run_action(action_); }

 private:
  detail::ChannelImpl<T>& impl() const noexcept { return writer_.end_state()->impl(); }
  Writer<T> writer_;
  T value_;                    // offered value (moved out by the reader that takes it)
  std::optional<T> original_;  // for reuse by an Alternation
  Action action_;
  detail::Op op_;
};

template <class Action = detail::NoAction>
class TimeoutGuard final : public detail::Guard, public detail::WhenMixin<TimeoutGuard<Action>> {
 public:
  TimeoutGuard(std::chrono::nanoseconds d, Action action) : Guard(Kind::timeout), action_(std::move(action)) {
    timeout_ = d;
  }
  void fire(Selected&) override { detail::run_action(action_); }

 private:
  Action action_;
};

template <class Action = detail::NoAction>
class SkipGuard final : public detail::Guard, public detail::WhenMixin<SkipGuard<Action>> {
 public:
  explicit SkipGuard(Action action) : Guard(Kind::skip), action_(std::move(action)) {}
  void fire(Selected&) override { detail::run_action(action_); }

 private:
  Action action_;
};

/// Fires when a value can be read from `r`; the action gets the value.
template <class T, class Action = detail::NoAction>
InputGuard<T, Action> input(Reader<T> r, Action action = {}) {
  return InputGuard<T, Action>(std::move(r), std::move(action));
}
/// Fires when `value` could be written to `w` (it was taken or buffered).
template <class T, class V, class Action = detail::NoAction>
OutputGuard<T, Action> output(Writer<T> w, V&& value, Action action = {}) {
  return OutputGuard<T, Action>(std::move(w), T(std::forward<V>(value)), std::move(action));
}
/// Fires when nothing else was ready within `d`.
template <class Rep, class Period, class Action = detail::NoAction>
TimeoutGuard<Action> timeout(std::chrono::duration<Rep, Period> d, Action action = {}) {
  return TimeoutGuard<Action>(std::chrono::duration_cast<std::chrono::nanoseconds>(d), std::move(action));
}
/// Fires at once when nothing else is ready.
template <class Action = detail::NoAction>
SkipGuard<Action> skip(Action action = {}) {
  return SkipGuard<Action>(std::move(action));
}

namespace detail {

enum class SelectMode : std::uint8_t { pri, alt, fair };

/// The select algorithm over `n` guards, trying them from `start` (in
/// rotation) for priority. Defined in channels/src/alternation.cpp.
Selected select(Guard* const* guards, std::size_t n, std::size_t start);

/// A random starting guard (AltSelect).
std::size_t random_start(std::size_t n) noexcept;
/// select() starting after the last winner among these channels (FairSelect).
Selected fair_select(Guard* const* guards, std::size_t n);

}  // namespace detail

template <class... G>
Selected PriSelect(G&&... guards) {
  std::array<detail::Guard*, sizeof...(G)> list{&guards...};
  return detail::select(list.data(), list.size(), 0);
}
template <class... G>
Selected AltSelect(G&&... guards) {
  std::array<detail::Guard*, sizeof...(G)> list{&guards...};
  return detail::select(list.data(), list.size(), detail::random_start(list.size()));
}
template <class... G>
Selected FairSelect(G&&... guards) {
  std::array<detail::Guard*, sizeof...(G)> list{&guards...};
  return detail::fair_select(list.data(), list.size());
}

/// A reusable set of guards (PyCSP's Alternation): select(), pri_select(),
/// fair_select() may be called any number of times; fair_select rotates
/// priority across this object's calls. Output guards offer their value
/// anew at each call.
class Alternation {
 public:
  template <class... G>
  explicit Alternation(G&&... guards) {
    (add(std::forward<G>(guards)), ...);
  }
  Selected select() { return detail::select(raw_.data(), raw_.size(), detail::random_start(raw_.size())); }
  Selected pri_select() { return detail::select(raw_.data(), raw_.size(), 0); }
  Selected fair_select() {
    Selected s = detail::select(raw_.data(), raw_.size(), next_fair_);
    next_fair_ = raw_.empty() ? 0 : (s.index + 1) % raw_.size();
    return s;
  }
  /// Enables or disables guard i for later selects (occam's precondition).
  void enable(std::size_t i, bool on) { guards_.at(i)->enabled_ = on; }

 private:
  template <class G>
  void add(G&& g) {
    auto owned = std::make_unique<std::decay_t<G>>(std::move(g));
    if constexpr (requires { owned->keep_for_reuse(); }) owned->keep_for_reuse();
    raw_.push_back(owned.get());
    guards_.push_back(std::move(owned));
  }
  std::vector<std::unique_ptr<detail::Guard>> guards_;
  std::vector<detail::Guard*> raw_;
  std::size_t next_fair_ = 0;  // fair_select starts after the last winner
};

}  // namespace csp
