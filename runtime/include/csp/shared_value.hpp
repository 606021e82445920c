// csp/shared_value.hpp: csp::SharedValue<T> and csp::SharedArray<T>, plain
// data in shared memory that os_process children see (the seeds'
// multiprocessing.Value('i', 0) and Array('i', 5), done right).
//
//   csp::SharedValue<long> counter{0};
//   counter.fetch_add(1);                       // atomic, across OS processes
//   csp::SharedValue<Point> p{{0, 0}};
//   p.with_lock([](Point& v) { v.x += 1; });    // under an interprocess lock
//
//   csp::SharedArray<double> a(1024);           // 1024 zeros
//   a[7] = 3.5;  for (double x : a) ...;
//
// Both are cheap shared handles: copies refer to the same memory, and, as
// with a pointer, a const handle still gives write access. The memory
// is an anonymous shared mapping (csp/detail/shared_memory.hpp), made when
// the first handle is, inherited by every os_process child forked after
// that, and unmapped in each OS process when its last handle there goes.
//
// T must be trivially copyable: the bytes are all there is (no pointers
// into one process's heap survive the trip).
// - Integral T (other than bool for the arithmetic): load, store, exchange,
//   fetch_add/sub/and/or/xor and compare_exchange are single atomic
//   instructions (std::atomic_ref), lock-free across OS processes.
// - Any T: with_lock(f) runs f(T&) under the value's robust interprocess
//   lock (csp::Mutex{csp::interprocess}'s algorithm) and returns what f
//   returns; for non-integral T, load() and store() take that lock too.
//   For integral T, with_lock is also atomic against the lock-free
//   operations: f runs on a copy, committed by compare-and-swap, and is run
//   again if a lock-free operation changed the value meanwhile (so f
//   should do nothing but compute the new value).
// - The seed's `value.value += 1` is a read then a write: two processes
//   can both read 5 and both write 6. `counter.store(counter.load() + 1)`
//   has the same race here; fetch_add(1) or with_lock has not.
// - SharedArray elements: a[i] is a plain T& into shared memory (no
//   synchronisation: give each process its own elements, or use the
//   atomic per-element operations, or with_lock over the whole span).
#pragma once

#include <atomic>
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <csp/detail/shared_memory.hpp>

namespace csp {

namespace detail {

/// T whose operations are lock-free atomics in shared memory.
template <class T>
concept SharedAtomic = std::is_integral_v<T> && std::atomic_ref<T>::is_always_lock_free;
/// ... and which have arithmetic (fetch_add and friends).
template <class T>
concept SharedArithmetic = SharedAtomic<T> && !std::is_same_v<T, bool>;

template <class T>
inline constexpr std::size_t shared_alignment =
    std::max(alignof(T), SharedAtomic<T> ? std::atomic_ref<T>::required_alignment : alignof(T));

/// Releases a SharedLock at scope exit (also when f throws).
class SharedLockGuard {
 public:
  explicit SharedLockGuard(SharedLock& lock) : lock_(lock) { lock_.lock_until(forever); }
  ~SharedLockGuard() {
    try {
      lock_.unlock();
    } catch (...) {  // taken over after we were presumed dead: nothing to release
    }
  }
  SharedLockGuard(const SharedLockGuard&) = delete;
  SharedLockGuard& operator=(const SharedLockGuard&) = delete;

 private:
  SharedLock& lock_;
};

/// The header of a SharedValue / SharedArray block; the elements follow at
/// `offset` bytes from the start.
struct SharedDataHeader {
  SharedLock lock_;         // guards with_lock() and non-atomic load/store
  std::size_t count_ = 0;   // number of elements
};

/// Runs f on a copy of *target and commits the result by CAS, retrying if
/// a lock-free operation changed *target meanwhile. Caller holds the lock.
template <class T, class F>
decltype(auto) with_lock_atomic(T& target, F& f) {
  std::atomic_ref<T> ref(target);
  for (;;) {
    T old = ref.load(std::memory_order_acquire);
    T work = old;
    if constexpr (std::is_void_v<std::invoke_result_t<F&, T&>>) {
      std::invoke(f, work);
      if (ref.compare_exchange_strong(old, work, std::memory_order_acq_rel)) return;
    } else {
      auto result = std::invoke(f, work);
      if (ref.compare_exchange_strong(old, work, std::memory_order_acq_rel)) return result;
    }
  }
}

/// A shared block holding the header and `count` elements of T.
template <class T>
class SharedData {
 public:
  static constexpr std::size_t offset =
      (sizeof(SharedDataHeader) + shared_alignment<T> - 1) / shared_alignment<T> * shared_alignment<T>;

  explicit SharedData(std::size_t count)
      : block_(offset + std::max<std::size_t>(count, 1) * sizeof(T)),
        header_(new (block_.data()) SharedDataHeader) {
    header_->count_ = count;
  }
  [[nodiscard]] SharedDataHeader& header() const noexcept { return *header_; }
  [[nodiscard]] T* elements() const noexcept {
    return std::launder(reinterpret_cast<T*>(static_cast<char*>(block_.data()) + offset));
  }

 private:
  SharedBlock block_;             // the mapping
  SharedDataHeader* header_;      // at its start
};

}  // namespace detail

/// One T in shared memory, visible to os_process children.
template <class T>
  requires std::is_trivially_copyable_v<T>
class SharedValue {
 public:
  using value_type = T;

  /// A value-initialised T (zero for numbers).
  SharedValue()
    requires std::default_initializable<T>
      : SharedValue(T{}) {}
  /// Starts as `initial`.
  explicit SharedValue(T initial) : data_(std::make_shared<detail::SharedData<T>>(1)) {
    std::construct_at(data_->elements(), initial);
  }

  /// The current value (atomic for integral T, else under the lock).
  [[nodiscard]] T load() const {
    if constexpr (detail::SharedAtomic<T>) {
      return ref().load(std::memory_order_seq_cst);
    } else {
      detail::SharedLockGuard guard(data_->header().lock_);
      return *data_->elements();
    }
  }
  /// Replaces the value (atomic for integral T, else under the lock).
  void store(T v) const {
    if constexpr (detail::SharedAtomic<T>) {
      ref().store(v, std::memory_order_seq_cst);
    } else {
      detail::SharedLockGuard guard(data_->header().lock_);
      *data_->elements() = v;
    }
  }
  /// Atomically replaces the value and returns the old one.
  T exchange(T v) const
    requires detail::SharedAtomic<T>
  {
    return ref().exchange(v, std::memory_order_seq_cst);
  }
  /// Replaces the value with `desired` if it equals `expected`; otherwise
  /// loads the current value into `expected`. True if it replaced.
  bool compare_exchange(T& expected, T desired) const
    requires detail::SharedAtomic<T>
  {
    return ref().compare_exchange_strong(expected, desired, std::memory_order_seq_cst);
  }
  /// Atomic read-modify-write; each returns the value before.
  T fetch_add(T d) const requires detail::SharedArithmetic<T> { return ref().fetch_add(d, std::memory_order_seq_cst); }
  T fetch_sub(T d) const requires detail::SharedArithmetic<T> { return ref().fetch_sub(d, std::memory_order_seq_cst); }
  T fetch_and(T d) const requires detail::SharedArithmetic<T> { return ref().fetch_and(d, std::memory_order_seq_cst); }
  T fetch_or(T d) const requires detail::SharedArithmetic<T> { return ref().fetch_or(d, std::memory_order_seq_cst); }
  T fetch_xor(T d) const requires detail::SharedArithmetic<T> { return ref().fetch_xor(d, std::memory_order_seq_cst); }

  /// Runs f(T&) under the value's interprocess lock; returns f's result.
  /// Blocks (parks a coroutine) while another process holds the lock.
  template <class F>
    requires std::invocable<F&, T&>
  decltype(auto) with_lock(F&& f) const {
    detail::SharedLockGuard guard(data_->header().lock_);
    if constexpr (detail::SharedAtomic<T>) {
      return detail::with_lock_atomic(*data_->elements(), f);
    } else {
      return std::invoke(f, *data_->elements());
    }
  }

 private:
  std::atomic_ref<T> ref() const
    requires detail::SharedAtomic<T>
  {
    return std::atomic_ref<T>(*data_->elements());
  }
  std::shared_ptr<detail::SharedData<T>> data_;  // shared by copies
};

/// A fixed-size array of T in shared memory, visible to os_process children.
template <class T>
  requires std::is_trivially_copyable_v<T>
class SharedArray {
 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  /// `n` value-initialised elements (zeros for numbers), like Array('i', n).
  explicit SharedArray(std::size_t n)
    requires std::default_initializable<T>
      : data_(std::make_shared<detail::SharedData<T>>(n)) {
    for (std::size_t i = 0; i < n; ++i) std::construct_at(data_->elements() + i);
  }
  /// `n` copies of `value`.
  SharedArray(std::size_t n, const T& value) : data_(std::make_shared<detail::SharedData<T>>(n)) {
    for (std::size_t i = 0; i < n; ++i) std::construct_at(data_->elements() + i, value);
  }
  /// The given elements, like Array('i', range(10)).
  SharedArray(std::initializer_list<T> values) : data_(std::make_shared<detail::SharedData<T>>(values.size())) {
    std::size_t i = 0;
    for (const T& v : values) std::construct_at(data_->elements() + i++, v);
  }

  /// Element i, a plain reference into shared memory (not synchronised).
  /// A handle gives access like a pointer does, so const handles too.
  T& operator[](std::size_t i) const noexcept { return data_->elements()[i]; }
  /// Element i; throws std::out_of_range past the end.
  T& at(std::size_t i) const {
    if (i >= size())
      throw std::out_of_range("csp::SharedArray::at: index " + std::to_string(i) + " >= size " +
                              std::to_string(size()));
    return (*this)[i];
  }
  [[nodiscard]] std::size_t size() const noexcept { return data_->header().count_; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  T* data() const noexcept { return data_->elements(); }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }

  /// Atomic operations on element i (integral T).
  [[nodiscard]] T load(std::size_t i) const requires detail::SharedAtomic<T> {
    return ref(i).load(std::memory_order_seq_cst);
  }
  void store(std::size_t i, T v) const requires detail::SharedAtomic<T> { ref(i).store(v, std::memory_order_seq_cst); }
  T exchange(std::size_t i, T v) const requires detail::SharedAtomic<T> {
    return ref(i).exchange(v, std::memory_order_seq_cst);
  }
  bool compare_exchange(std::size_t i, T& expected, T desired) const requires detail::SharedAtomic<T> {
    return ref(i).compare_exchange_strong(expected, desired, std::memory_order_seq_cst);
  }
  T fetch_add(std::size_t i, T d) const requires detail::SharedArithmetic<T> {
    return ref(i).fetch_add(d, std::memory_order_seq_cst);
  }
  T fetch_sub(std::size_t i, T d) const requires detail::SharedArithmetic<T> {
    return ref(i).fetch_sub(d, std::memory_order_seq_cst);
  }

  /// Runs f(std::span<T>) over the whole array under the array's
  /// interprocess lock; returns f's result. Excludes other with_lock calls
  /// (not plain a[i] accesses or the atomic operations).
  template <class F>
    requires std::invocable<F&, std::span<T>>
  decltype(auto) with_lock(F&& f) const {
    detail::SharedLockGuard guard(data_->header().lock_);
    return std::invoke(f, std::span<T>(data(), size()));
  }

 private:
  std::atomic_ref<T> ref(std::size_t i) const
    requires detail::SharedAtomic<T>
  {
    return std::atomic_ref<T>(data_->elements()[i]);
  }
  std::shared_ptr<detail::SharedData<T>> data_;  // shared by copies
};

}  // namespace csp
