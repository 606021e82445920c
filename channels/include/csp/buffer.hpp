// csp/buffer.hpp: the buffers a channel can have. csp::buffer(n) is a FIFO
// of n values; csp::priority_buffer(n[, less]) hands out the smallest value
// first (std::less by default, or the given strict weak order).
// Both hold at most n values and allocate only when the channel is made.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace csp {

/// A FIFO buffer of `capacity` values.
struct BufferSpec {
  std::size_t capacity;
};
inline BufferSpec buffer(std::size_t capacity) { return BufferSpec{capacity}; }

/// A buffer of `capacity` values read smallest first by `Less`.
template <class Less = std::less<>>
struct PriorityBufferSpec {
  std::size_t capacity;
  Less less;
};
template <class Less = std::less<>>
PriorityBufferSpec<Less> priority_buffer(std::size_t capacity, Less less = Less{}) {
  return PriorityBufferSpec<Less>{capacity, std::move(less)};
}

namespace detail {

/// Storage behind a buffered channel: a ring, or a binary heap when a
/// priority order is given. Not synchronised: the channel's lock guards it.
template <class T>
class ChannelBuffer {
 public:
  ChannelBuffer() = default;
  explicit ChannelBuffer(std::size_t capacity) : capacity_(capacity), ring_(capacity) {}
  template <class Less>
  ChannelBuffer(std::size_t capacity, Less less)
      : capacity_(capacity), heap_less_([less](const T& a, const T& b) { return less(b, a); }) {
    heap_.reserve(capacity);
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t size() const noexcept { return heap_less_ ? heap_.size() : size_; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] bool full() const noexcept { return size() >= capacity_; }

  void push(T&& value) {
    if (heap_less_) {
      heap_.push_back(std::move(value));
      std::push_heap(heap_.begin(), heap_.end(), heap_less_);
      return;
    }
    ring_[(head_ + size_) % capacity_].emplace(std::move(value));
    ++size_;
  }
  T pop() {
    if (heap_less_) {
      std::pop_heap(heap_.begin(), heap_.end(), heap_less_);
      T value = std::move(heap_.back());
      heap_.pop_back();
      return value;
    }
    T value = std::move(*ring_[head_]);
    ring_[head_].reset();
    head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
    --size_;
    return value;
  }

 private:
  std::size_t capacity_ = 0;                      // most values held; 0 = unbuffered
  std::vector<std::optional<T>> ring_;            // FIFO slots (no priority)
  std::size_t head_ = 0;                          // oldest slot of ring_
  std::size_t size_ = 0;                          // values in ring_
  std::vector<T> heap_;                           // priority heap (when heap_less_)
  std::function<bool(const T&, const T&)> heap_less_;  // inverted order: max-heap of "greater"
};

}  // namespace detail
}  // namespace csp
