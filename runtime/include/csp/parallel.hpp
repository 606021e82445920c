// csp/parallel.hpp: Parallel, Sequence and Spawn (PyCSP's combinators).
//
// Each accepts csp::Process<R> values, plain callables taking no arguments
// (wrapped with csp::process) and ranges (std::vector) of Process<R>.
// - Parallel(ps...) runs all at once and returns when all have finished:
//   a std::tuple of their results (void as std::monostate, a range as a
//   std::vector<R>). Parallel(range) alone returns std::vector<R> (nothing
//   for Process<void>). After all finished it rethrows the first exception
//   that a process ended with (other than poison and retire).
// - Sequence(ps...) runs them one after another, same results; it stops at
//   the first exception and rethrows it.
// - Spawn(p) starts p and returns a handle; join() waits and returns its
//   result. An unjoined spawned process is joined when its spawner ends
//   (from main: at runtime shutdown, at exit at the latest).
// Callable from main, threads and processes, nested to any depth.
#pragma once

#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <csp/detail/spawn.hpp>
#include <csp/process.hpp>

namespace csp {

namespace detail {

template <class T>
struct is_process : std::false_type {};
template <class R>
struct is_process<Process<R>> : std::true_type {};

template <class T>
struct is_process_range : std::false_type {};
template <class R>
struct is_process_range<std::vector<Process<R>>> : std::true_type {};

/// Turns a Parallel argument into a Process or a vector of them.
template <class P>
auto as_item(P&& p) {
  using D = std::decay_t<P>;
  if constexpr (is_process<D>::value || is_process_range<D>::value) {
    return D(std::move(p));
  } else {
    static_assert(std::is_invocable_v<D&>, "Parallel/Sequence take Process values, callables or vectors of Process");
    return csp::process(std::forward<P>(p));
  }
}

template <class R>
using value_or_monostate = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

/// Where one item's results go while it runs.
template <class Item>
struct Slot;
template <class R>
struct Slot<Process<R>> {
  std::conditional_t<std::is_void_v<R>, std::monostate, std::optional<R>> value;
  std::size_t count(const Process<R>&) const { return 1; }
  void launch(Process<R>& p, Latch* latch) {
    auto body = p.release_body();
    if constexpr (!std::is_void_v<R>) body->result_ = &value;
    Placement placement = p.placement();
    start(std::move(body), latch, placement);
  }
  value_or_monostate<R> take() {
    if constexpr (std::is_void_v<R>) {
      return {};
    } else {
      return value ? std::move(*value) : R{};
    }
  }
};
template <class R>
struct Slot<std::vector<Process<R>>> {
  std::vector<std::conditional_t<std::is_void_v<R>, std::monostate, std::optional<R>>> values;
  std::size_t count(const std::vector<Process<R>>& v) const { return v.size(); }
  void launch(std::vector<Process<R>>& ps, Latch* latch) {
    values.resize(ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      auto body = ps[i].release_body();
      if constexpr (!std::is_void_v<R>) body->result_ = &values[i];
      start(std::move(body), latch, ps[i].placement());
    }
  }
  auto take() {
    if constexpr (std::is_void_v<R>) {
      return std::monostate{};
    } else {
      std::vector<R> out;
      out.reserve(values.size());
      for (auto& v : values) out.push_back(v ? std::move(*v) : R{});
      return out;
    }
  }
};

}  // namespace detail

template <class... Ps>
auto Parallel(Ps&&... ps) {
  auto items = std::make_tuple(detail::as_item(std::forward<Ps>(ps))...);
  std::tuple<detail::Slot<decltype(detail::as_item(std::forward<Ps>(ps)))>...> slots;
  std::size_t n = 0;
  std::apply([&](auto&... item) { std::apply([&](auto&... slot) { ((n += slot.count(item)), ...); }, slots); },
             items);
  detail::Latch latch(n);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (std::get<I>(slots).launch(std::get<I>(items), &latch), ...);
  }(std::index_sequence_for<Ps...>{});
  latch.wait();
  if (auto e = latch.first_error()) std::rethrow_exception(e);
  using First = std::tuple_element_t<0, std::tuple<decltype(detail::as_item(std::forward<Ps>(ps)))...>>;
  if constexpr (sizeof...(Ps) == 1 && detail::is_process_range<First>::value) {
    auto result = std::get<0>(slots).take();
    if constexpr (!std::is_same_v<decltype(result), std::monostate>) return result;
  } else {
    return std::apply([](auto&... slot) { return std::make_tuple(slot.take()...); }, slots);
  }
}

template <class... Ps>
auto Sequence(Ps&&... ps) {
  auto items = std::make_tuple(detail::as_item(std::forward<Ps>(ps))...);
  std::tuple<detail::Slot<decltype(detail::as_item(std::forward<Ps>(ps)))>...> slots;
  auto run_one = [](auto& slot, auto& item) {
    if constexpr (detail::is_process_range<std::decay_t<decltype(item)>>::value) {
      slot.values.resize(item.size());
      for (std::size_t i = 0; i < item.size(); ++i) {
        detail::Latch latch(1);
        auto body = item[i].release_body();
        if constexpr (!std::is_void_v<typename std::decay_t<decltype(item)>::value_type::result_type>)
          body->result_ = &slot.values[i];
        detail::start(std::move(body), &latch, item[i].placement());
        latch.wait();
        if (auto e = latch.first_error()) std::rethrow_exception(e);
      }
    } else {
      detail::Latch latch(1);
      slot.launch(item, &latch);
      latch.wait();
      if (auto e = latch.first_error()) std::rethrow_exception(e);
    }
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (run_one(std::get<I>(slots), std::get<I>(items)), ...);
  }(std::index_sequence_for<Ps...>{});
  using First = std::tuple_element_t<0, std::tuple<decltype(detail::as_item(std::forward<Ps>(ps)))...>>;
  if constexpr (sizeof...(Ps) == 1 && detail::is_process_range<First>::value) {
    auto result = std::get<0>(slots).take();
    if constexpr (!std::is_same_v<decltype(result), std::monostate>) return result;
  } else {
    return std::apply([](auto&... slot) { return std::make_tuple(slot.take()...); }, slots);
  }
}

/// Handle of a spawned process. Copyable; join() from any copy.
template <class R>
class Spawned {
 public:
  struct State : detail::SpawnState {
    std::conditional_t<std::is_void_v<R>, std::monostate, std::optional<R>> value;
  };
  explicit Spawned(std::shared_ptr<State> state) : state_(std::move(state)) {}
  /// Waits for the process; rethrows its exception (first join only).
  /// Returns its result (R{} if it ended by poison or retire).
  R join() {
    state_->join();
    if constexpr (!std::is_void_v<R>) return state_->value ? *state_->value : R{};
  }
  [[nodiscard]] bool done() const noexcept { return state_->latch_.done(); }

 private:
  std::shared_ptr<State> state_;
};

template <class P>
auto Spawn(P&& p) {
  auto proc = detail::as_item(std::forward<P>(p));
  using R = typename decltype(proc)::result_type;
  auto state = std::make_shared<typename Spawned<R>::State>();
  auto body = proc.release_body();
  if constexpr (!std::is_void_v<R>) body->result_ = &state->value;
  detail::spawn(state, std::move(body), proc.placement());
  return Spawned<R>(std::move(state));
}

}  // namespace csp
