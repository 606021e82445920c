// csp/runtime.hpp: configuring the runtime, and what a running process can
// ask of it (yield, sleep, wait for a file descriptor).
//
// The runtime starts itself on first use. Before that, configure() or the
// environment sets it up:
//   CSP_WORKERS=N      worker threads (default: one per online CPU)
//   CSP_STACK_SIZE=B   coroutine stack size in bytes (default 128 KiB)
//   CSP_SPIN_US=U      how long an idle worker spins before sleeping (default 50)
//
// Stacks. Each coroutine gets `stack_size` bytes of virtual memory; only the
// pages it touches become resident, so a parked process that went no deeper
// than a few frames costs about one 4 KiB page. The first stacks get a
// PROT_NONE guard page each, so an overflow faults at once; past the
// kernel's mapping budget (vm.max_map_count: each guarded stack takes two
// mappings) stacks come from slabs and carry a canary instead, checked
// whenever the process switches out: an overflow then aborts with a message
// naming the process. A process may use up to `stack_size - 64` bytes of
// stack; deep recursion or large local arrays need a larger stack_size.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <csp/detail/wait.hpp>

namespace csp {

struct Config {
  /// Worker threads running coroutines; 0 means one per online CPU.
  unsigned workers = 0;
  /// Bytes of stack per coroutine (rounded up to whole pages).
  std::size_t stack_size = 128 * 1024;
  /// Microseconds an idle worker spins looking for work before it sleeps.
  unsigned spin_us = 50;
};

/// Configures the runtime. Call before the first process runs; throws
/// csp::Error if the runtime is already running with another configuration.
void configure(const Config& config);

/// The configuration in force (after environment and configure()).
Config configuration();

/// Shuts the runtime down: joins processes spawned from main, stops the
/// workers. Called automatically at exit; after it, the next use starts a
/// fresh runtime (and configure() may be called again).
void shutdown();

/// Lets other ready processes on this worker run. Inside a coroutine it
/// returns after they had their turn; on a thread it is std::this_thread::yield.
void yield();

/// Parks the caller until `deadline` (steady clock).
void sleep_until(std::chrono::steady_clock::time_point deadline);

/// Parks the caller for at least `duration`. A duration too long for the
/// steady clock (hours::max(), say) sleeps until the end of time instead of
/// overflowing into the past.
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> duration) {
  using Clock = std::chrono::steady_clock;
  const auto now = Clock::now();
  const auto room = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(Clock::time_point::max() - now);
  sleep_until(duration >= room ? Clock::time_point::max() : now + std::chrono::ceil<Clock::duration>(duration));
}

/// Index of the worker running the calling coroutine, or -1 on a thread.
int this_worker() noexcept;

/// Number of worker threads of the running runtime (starts it if needed).
unsigned worker_count();

/// Name of the calling process (for messages); "main" or "thread" outside one.
const char* this_process_name() noexcept;

namespace detail {
/// Parks the caller until `fd` reports one of `events` (EPOLLIN/EPOLLOUT
/// bits), an error or hang-up, or the deadline passes. Returns false on
/// timeout. Coroutines wait in their worker's epoll reactor; threads in poll(2).
/// `soon`: readiness is likely within microseconds (the answer of a peer
/// that is running, on a pipe or socket): an idle worker with such a wait
/// polls its fds for a while (Config::spin_us, adaptively) before it sleeps.
bool wait_fd(int fd, std::uint32_t events, Deadline deadline, const char* what = "fd", bool soon = false);

/// Resets the runtime in a freshly forked child: the parent's workers do not
/// exist there, so the child starts its own on first use.
void reset_after_fork() noexcept;

/// Brackets a fork(2) from a worker. Under ASan or TSan (whose allocators in
/// GCC 12 take no lock around fork, so a child forked while another worker
/// allocates can inherit a held allocator lock and hang at its first `new`)
/// the other workers are stopped at their next switch point first, for at
/// most a second; in other builds (glibc's malloc handles fork) both are
/// no-ops. resume_after_fork() runs in the parent only.
void quiesce_for_fork() noexcept;
void resume_after_fork() noexcept;
}  // namespace detail

}  // namespace csp
