// stack.hpp: coroutine stacks, pooled.
//
// Two kinds of stack, both of `size` usable bytes:
// - guarded: its own mapping with a PROT_NONE page below it, so an overflow
//   faults at once. Each costs two kernel mappings, so only the first
//   `guard budget` stacks (a quarter of vm.max_map_count) are guarded.
// - slab: carved from a large mapping shared by many stacks, with a canary
//   word at its low end that the scheduler checks whenever the process
//   switches out. Slab stacks start 64 bytes below a page boundary, so the
//   canary shares a page with the top frames of the stack beneath it: a
//   parked process that went no deeper than ~4 KiB keeps one page resident,
//   not two.
// Stacks are never unmapped; a finished process's stack goes back to the pool.
// Invariant: the pool's lists are guarded by `mutex_` (any worker may
// release a stack that another allocated).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace csp::detail {

struct Stack {
  char* bottom = nullptr;        // lowest usable byte (canary lives here for slab stacks)
  std::size_t size = 0;          // usable bytes above bottom
  bool guarded = false;          // protected by a guard page instead of a canary
  [[nodiscard]] char* top() const noexcept { return bottom + size; }
};

inline constexpr std::uint64_t kStackCanary = 0xC5BCA7A11C0FFEE5ull;
inline constexpr std::size_t kCanaryBytes = 64;

class StackPool {
 public:
  /// A stack of the configured size; throws csp::SystemError when memory
  /// cannot be mapped.
  Stack acquire(std::size_t size);
  void release(const Stack& stack) noexcept;
  /// True while the canary of a slab stack is intact (always for guarded).
  static bool intact(const Stack& stack) noexcept {
    return stack.guarded || *reinterpret_cast<const std::uint64_t*>(stack.bottom) == kStackCanary;
  }
  /// Forgets the lock state after fork (the child has only one thread).
  void reset_after_fork() noexcept;

 private:
  Stack map_guarded(std::size_t size);
  void map_slab(std::size_t size);

  std::mutex mutex_;                 // guards every member below
  std::vector<Stack> free_;          // ready stacks of size_
  std::size_t size_ = 0;             // the size the free list holds
  std::size_t guarded_count_ = 0;    // guarded stacks ever mapped
  std::size_t guard_budget_ = 0;     // how many may be guarded; 0 until computed
};

StackPool& stack_pool() noexcept;

}  // namespace csp::detail
