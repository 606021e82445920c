// csp/process.hpp: csp::Process, csp::process(), csp::thread_process() and
// `process * n`.
//
// A Process binds a callable and its arguments (copied or moved, like
// std::thread). When it runs and ends:
// - by csp::ChannelPoisoned: every channel end among its arguments is
//   poisoned, and its result is R{};
// - by csp::ChannelRetired: every channel end among its arguments retires,
//   and its result is R{};
// - by any other exception: its argument ends are poisoned (so the network
//   unwinds) and the exception goes to whoever joins it (Parallel rethrows
//   the first).
// Either way the callable and its arguments are destroyed as soon as it
// finishes, so channel ends it held leave their sides then.
//
// What counts as a "channel end" is decided by hooks found by argument-
// dependent lookup: csp_poison(a), csp_retire(a), csp_fresh(a). Channels
// define them for Reader and Writer; a std::vector of ends is walked.
#pragma once

#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <csp/detail/settle.hpp>
#include <csp/detail/spawn.hpp>
#include <csp/error.hpp>
#include <csp/trace.hpp>

namespace csp {

namespace detail {

template <class A>
void poison_arg(A& a) {
  if constexpr (requires { csp_poison(a); }) {
    csp_poison(a);
  } else if constexpr (requires { a.begin(); a.end(); } && !std::is_same_v<A, std::string>) {
    for (auto& e : a) poison_arg(e);
  }
}

template <class A>
void retire_arg(A& a) {
  if constexpr (requires { csp_retire(a); }) {
    csp_retire(a);
  } else if constexpr (requires { a.begin(); a.end(); } && !std::is_same_v<A, std::string>) {
    for (auto& e : a) retire_arg(e);
  }
}

/// The channel ends among `a`, for the process network (csp/trace.hpp).
template <class A>
void describe_arg(const A& a, std::vector<EndInfo>& out) {
  if constexpr (requires { csp_describe(a, out); }) {
    csp_describe(a, out);
  } else if constexpr (requires { a.begin(); a.end(); } && !std::is_same_v<A, std::string>) {
    for (const auto& e : a) describe_arg(e, out);
  }
}

/// A copy of `a` for one of the n copies of `process * n`: channel ends
/// become fresh ends of the same channel; everything else is copied.
template <class A>
A fresh_arg(const A& a) {
  if constexpr (requires { { csp_fresh(a) } -> std::convertible_to<A>; }) {
    return csp_fresh(a);
  } else if constexpr (requires { typename A::value_type; a.begin(); a.push_back(*a.begin()); } &&
                       !std::is_same_v<A, std::string>) {
    A out;
    for (const auto& e : a) out.push_back(fresh_arg(e));
    return out;
  } else {
    return a;
  }
}

/// The typed part of a process body: where its result goes.
template <class R>
class TypedBody : public ProcessBody {
 public:
  /// Where run() stores the result; null to drop it. Set by the joiner.
  std::conditional_t<std::is_void_v<R>, void*, std::optional<R>*> result_ = nullptr;
  /// A new body with the same callable and fresh channel ends (process * n).
  virtual std::unique_ptr<TypedBody> fresh_copy() const = 0;
};

template <class R, class F, class... Args>
class BoundBody final : public TypedBody<R> {
 public:
  template <class F2, class... A2>
  explicit BoundBody(F2&& f, A2&&... args) : bound_(std::in_place, std::forward<F2>(f), std::forward<A2>(args)...) {}

  std::exception_ptr run() noexcept override {
    if (network_recording()) [[unlikely]]
      record_network();  // CSP_TRACE (csp/trace.hpp)
    std::exception_ptr error;
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply([](auto& f, auto&... args) { std::invoke(f, args...); }, *bound_);
      } else {
        R value = std::apply([](auto& f, auto&... args) -> R { return std::invoke(f, args...); }, *bound_);
        if (this->result_) this->result_->emplace(std::move(value));
      }
      settle_writes();  // its pipelined writes are done before anyone can see it finished
    } catch (const ChannelPoisoned&) {
      for_each_arg([](auto& a) { poison_arg(a); });
    } catch (const ChannelRetired&) {
      for_each_arg([](auto& a) { retire_arg(a); });
    } catch (...) {
      error = std::current_exception();
      try {
        for_each_arg([](auto& a) { poison_arg(a); });
      } catch (...) {
      }
    }
    bound_.reset();  // RAII retire: ends held by the process leave now
    return error;
  }

  std::unique_ptr<TypedBody<R>> fresh_copy() const override {
    auto copy = std::apply(
        [](const auto& f, const auto&... args) {
          return std::make_unique<BoundBody>(f, fresh_arg(args)...);
        },
        *bound_);
    copy->name_ = this->name_;
    return copy;
  }

 private:
  void record_network() noexcept {
    try {
      std::vector<EndInfo> ends;
      for_each_arg([&](auto& a) { describe_arg(a, ends); });
      record_process(this->name_, in_coroutine() ? "coroutine" : "thread", std::move(ends));
    } catch (...) {
      // out of memory: the network misses this process, the program runs on
    }
  }

  template <class Fn>
  void for_each_arg(Fn fn) {
    std::apply([&](auto&, auto&... args) { (fn(args), ...); }, *bound_);
  }

  std::optional<std::tuple<F, Args...>> bound_;  // callable and arguments, until finished
};

}  // namespace detail

/// A process not yet started: give it to Parallel, Sequence or Spawn.
template <class R>
class Process {
 public:
  using result_type = R;

  Process(std::unique_ptr<detail::TypedBody<R>> body, detail::Placement placement)
      : body_(std::move(body)), placement_(placement) {}
  Process(Process&&) noexcept = default;
  Process& operator=(Process&&) noexcept = default;

  /// Names the process in deadlock reports and error messages.
  Process&& named(std::string name) && {
    body_->name_ = std::move(name);
    return std::move(*this);
  }
  Process& named(std::string name) & {
    body_->name_ = std::move(name);
    return *this;
  }
  [[nodiscard]] const std::string& name() const { return body_->name_; }

  /// n copies, each with fresh ends of the same channels (PyCSP's `* n`).
  std::vector<Process> operator*(std::size_t n) && {
    std::vector<Process> copies;
    copies.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto body = body_->fresh_copy();
      body->name_ = body_->name_ + "[" + std::to_string(i) + "]";
      copies.emplace_back(std::move(body), placement_);
    }
    body_.reset();  // the original's ends leave only after the copies joined
    return copies;
  }
  friend std::vector<Process> operator*(std::size_t n, Process&& p) { return std::move(p) * n; }

  // Used by Parallel / Sequence / Spawn.
  std::unique_ptr<detail::TypedBody<R>> release_body() { return std::move(body_); }
  [[nodiscard]] detail::Placement placement() const noexcept { return placement_; }

 private:
  std::unique_ptr<detail::TypedBody<R>> body_;  // null once started
  detail::Placement placement_;
};

namespace detail {
template <class F, class... Args>
using process_result_t = std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>;

template <class F, class... Args>
auto make_process(Placement placement, F&& f, Args&&... args) {
  using R = process_result_t<F, Args...>;
  auto body = std::make_unique<BoundBody<R, std::decay_t<F>, std::decay_t<Args>...>>(std::forward<F>(f),
                                                                                      std::forward<Args>(args)...);
  body->name_ = "process-" + std::to_string(next_process_id());
  return Process<R>(std::move(body), placement);
}
}  // namespace detail

/// A coroutine process running f(args...) on the scheduler.
template <class F, class... Args>
  requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
auto process(F&& f, Args&&... args) {
  return detail::make_process(detail::Placement::coroutine, std::forward<F>(f), std::forward<Args>(args)...);
}

/// A process on its own OS thread, for code that blocks in foreign libraries.
template <class F, class... Args>
  requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
auto thread_process(F&& f, Args&&... args) {
  return detail::make_process(detail::Placement::thread, std::forward<F>(f), std::forward<Args>(args)...);
}

}  // namespace csp
