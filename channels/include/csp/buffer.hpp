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
/// The ring keeps raw storage, so T needs no default constructor and a
/// slot holds a live T exactly while it is between head_ and head_+size_.
template <class T>
class ChannelBuffer {
 public:
  ChannelBuffer() = default;
  explicit ChannelBuffer(std::size_t capacity)
      : capacity_(capacity), ring_(capacity ? std::allocator<T>().allocate(capacity) : nullptr) {}
  template <class Less>
  ChannelBuffer(std::size_t capacity, Less less)
      : capacity_(capacity), heap_less_([less](const T& a, const T& b) { return less(b, a); }) {
    heap_.reserve(capacity);
  }
  ChannelBuffer(ChannelBuffer&& o) noexcept
      : capacity_(o.capacity_), ring_(std::exchange(o.ring_, nullptr)), head_(o.head_),
        size_(std::exchange(o.size_, 0)), heap_(std::move(o.heap_)), heap_less_(std::move(o.heap_less_)) {}
  ChannelBuffer& operator=(ChannelBuffer&&) = delete;
  ~ChannelBuffer() {
    if (!ring_) return;
    while (size_ != 0) pop();
    std::allocator<T>().deallocate(ring_, capacity_);
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] bool full() const noexcept { return size() >= capacity_; }

  __attribute__((always_inline)) void push(T&& value) {
    if (!ring_) [[unlikely]]
      return heap_push(std::move(value));
    std::size_t slot = head_ + size_;
    if (slot >= capacity_) slot -= capacity_;
    std::construct_at(ring_ + slot, std::move(value));
    ++size_;
  }
  /// Puts `value` back before every value held (FIFO ring only; the
  /// caller guarantees room). Used when values lent to a remote reader
  /// come back (channel_impl.hpp, "Lending").
  void push_front(T&& value) {
    head_ = head_ == 0 ? capacity_ - 1 : head_ - 1;
    std::construct_at(ring_ + head_, std::move(value));
    ++size_;
  }
  /// True for a FIFO ring (not a priority heap).
  [[nodiscard]] bool fifo() const noexcept { return ring_ != nullptr; }

  __attribute__((always_inline)) T pop() {
    if (!ring_) [[unlikely]]
      return heap_pop();
    T value = std::move(ring_[head_]);
    std::destroy_at(ring_ + head_);
    if (++head_ == capacity_) head_ = 0;
    --size_;
    return value;
  }

 private:
  __attribute__((noinline)) void heap_push(T&& value) {
    heap_.push_back(std::move(value));
    ++size_;  // size_ == heap_.size() even if the order throws
    std::push_heap(heap_.begin(), heap_.end(), heap_less_);
  }
  __attribute__((noinline)) T heap_pop() {
    std::pop_heap(heap_.begin(), heap_.end(), heap_less_);
    T value = std::move(heap_.back());
    heap_.pop_back();
    --size_;
    return value;
  }

  std::size_t capacity_ = 0;                      // most values held; 0 = unbuffered
  T* ring_ = nullptr;                             // FIFO slots (no priority order)
  std::size_t head_ = 0;                          // oldest slot of ring_
  std::size_t size_ = 0;                          // values held (in ring_ or heap_)
  std::vector<T> heap_;                           // priority heap (when heap_less_)
  std::function<bool(const T&, const T&)> heap_less_;  // inverted order: a max-heap of "greater"
};

}  // namespace detail
}  // namespace csp
