// stack.cpp: see stack.hpp.
#include "stack.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <new>

#include <csp/error.hpp>

#if defined(CSP_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

namespace csp::detail {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kSlabStacks = 256;

std::size_t read_guard_budget() {
  std::size_t max_maps = 65530;
  std::ifstream in("/proc/sys/vm/max_map_count");
  if (in) in >> max_maps;
  // Two mappings per guarded stack; leave three quarters of the budget to
  // slabs, shared memory segments, malloc and libraries.
  return max_maps / 8;
}

}  // namespace

StackPool& stack_pool() noexcept {
  static StackPool* pool = new StackPool;  // never destroyed: stacks outlive static destructors
  return *pool;
}

Stack StackPool::acquire(std::size_t size) {
  std::lock_guard lock(mutex_);
  if (size != size_) {  // reconfigured: old stacks stay mapped but unused
    free_.clear();
    size_ = size;
  }
  if (free_.empty()) {
    if (guard_budget_ == 0) guard_budget_ = read_guard_budget() + 1;
    if (guarded_count_ + 1 < guard_budget_) {
      free_.push_back(map_guarded(size));
      ++guarded_count_;
    } else {
      map_slab(size);
    }
  }
  Stack stack = free_.back();
  free_.pop_back();
#if defined(CSP_ASAN)
  // A parked coroutine's stack is where LeakSanitizer finds what the
  // coroutine still owns (its task, its body, what the body holds); without
  // this, every process parked at exit would be reported as leaked.
  __lsan_register_root_region(stack.bottom, stack.size);
#endif
  return stack;
}

void StackPool::release(const Stack& stack) noexcept {
#if defined(CSP_ASAN)
  __lsan_unregister_root_region(stack.bottom, stack.size);
#endif
  std::lock_guard lock(mutex_);
  if (stack.size == size_) free_.push_back(stack);
}

Stack StackPool::map_guarded(std::size_t size) {
  void* base = ::mmap(nullptr, size + kPage, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw_system_error("csp: mmap of a coroutine stack");
  if (::mprotect(base, kPage, PROT_NONE) != 0) {
    ::munmap(base, size + kPage);
    throw_system_error("csp: mprotect of a stack guard page");
  }
  return Stack{static_cast<char*>(base) + kPage, size, true};
}

void StackPool::map_slab(std::size_t size) {
  const std::size_t bytes = kSlabStacks * size + kPage;
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw_system_error("csp: mmap of a coroutine stack slab");
  // Stack i spans [first + i*size, first + (i+1)*size): its canary shares a
  // page with the top of stack i-1 (see stack.hpp).
  char* first = static_cast<char*>(base) + kPage - kCanaryBytes;
  for (std::size_t i = kSlabStacks; i-- > 0;) {
    Stack stack{first + i * size, size, false};
    std::memcpy(stack.bottom, &kStackCanary, sizeof kStackCanary);
    free_.push_back(stack);
  }
}

void StackPool::reset_after_fork() noexcept {
  new (&mutex_) std::mutex;  // a lock held by a vanished thread would never open
}

}  // namespace csp::detail
