// csp/interprocess.hpp: the csp::interprocess tag.
//
//   csp::Semaphore s{1, csp::interprocess};
//   csp::Mutex m{csp::interprocess};
//
// A synchronisation primitive constructed with the tag keeps its state in
// an anonymous shared memory block (Boost.Interprocess
// anonymous_shared_memory, MAP_SHARED) instead of the heap. os_process
// children are forked, so they inherit the block and every copy of the
// handle they hold refers to the same state as the parent's: the primitive
// works across OS processes as well as across coroutines, threads and
// workers. Only processes forked after the primitive was made share it.
// Without the tag a primitive belongs to the OS process that made it: an
// os_process child holds only a private copy, and using it there throws
// csp::Error (instead of silently synchronising with nobody).
//
// Costs: one mapping per primitive (a page at least); waiting is lock-free
// state plus a futex for threads and a bounded back-off poll (at most 1 ms
// between looks) for coroutines, since a process in another address space
// cannot reach this one's run queues.
#pragma once

namespace csp {

/// Tag: put the primitive in shared memory inherited by os_process children.
struct interprocess_t {
  explicit interprocess_t() = default;
};
inline constexpr interprocess_t interprocess{};

}  // namespace csp
