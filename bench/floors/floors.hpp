// floors.hpp: the raw floors csp-bench compares csp against.
//
// Each floor is the cheapest known way to do what a csp workload does, built
// straight on the OS or Boost.Context with no csp code: a Boost.Context switch,
// a spinning SPSC ring in POSIX shared memory, a pipe, a socket, memcpy.
//
// Contract shared by every function below:
// - It performs n operations and returns the wall-clock seconds of the timed
//   loop only; setup (fork, connect, shm creation, handshake) is outside it.
// - It checks the data it moves (sequence stamps in every message) and throws
//   floors::Failure on a failed check, a failed syscall or a dead peer. A
//   forked child is killed and reaped and every shm segment unlinked before
//   the exception leaves the function.
// - Cross-process floors fork a child that dies with the parent
//   (PR_SET_PDEATHSIG). With two or more CPUs allowed and PIN unset or not
//   "0", the parent's thread is pinned to the first allowed CPU and the child
//   to the second for the duration of the call; the caller's affinity is
//   restored on return.
// - Messages are `size` bytes, size >= 8, in page-aligned buffers (see the
//   4 KiB aliasing note in memcpy.cpp).
// - Not thread-safe: call from one thread at a time. The caller ignores
//   SIGPIPE (signal(SIGPIPE, SIG_IGN)) so a dead peer is an EPIPE, not a kill.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

namespace cspbench::floors {

/// A floor could not complete: failed check, failed syscall, or dead peer.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Smallest message size a floor accepts (a sequence stamp is 8 bytes).
inline constexpr std::size_t kMinSize = 8;

// ------------------------------------------------------------- Boost.Context

/// n resume round trips main -> fiber -> main: 2n context switches.
double fiber_switch(std::uint64_t n);

/// n round trips between two fibers on this thread; each hop copies `size`
/// bytes into the peer's buffer, then switches to it: the floor of an
/// in-process coroutine hand-off of a `size`-byte value.
double fiber_pingpong(std::size_t size, std::uint64_t n);

// -------------------------------------------------------- shared-memory ring

/// How the consumer of a shm ring waits for data.
enum class Wake {
  spin,     ///< busy-polls the ring (pause instruction)
  futex,    ///< sleeps on a futex word in the segment; producer always wakes
  eventfd,  ///< poll() + read() on an eventfd, as a reactor would; producer always writes
};
const char* to_string(Wake w) noexcept;

/// n round trips of a `size`-byte message between this process and a forked
/// child over two SPSC rings (one per direction) in one POSIX shm segment that
/// the child opens by name. Messages larger than a slot go through several.
double shm_ring_pingpong(Wake wake, std::size_t size, std::uint64_t n);

/// n messages of `size` bytes from this process to a forked child through a
/// spinning SPSC ring; one copy in, one copy out per message (as a pipe).
/// Slots are min(max(bit_ceil(size), 64 B), 64 KiB), at least 16 slots and
/// 64 KiB of slot data; larger messages are streamed through several slots.
double shm_ring_stream(std::size_t size, std::uint64_t n);

/// Pause between two messages of a wake-up measurement: longer than any
/// spin-then-park bound (csp's shm spin is 50 us), so the reader is asleep
/// when each message comes.
inline constexpr std::uint64_t kWakeGapNs = 150'000;

/// n one-way wake-ups of a parked reader: the parent sleeps kWakeGapNs, reads
/// CLOCK_MONOTONIC and sends that stamp through a shm ring whose consumer (a
/// forked child) sleeps as `wake` says (futex or eventfd; not spin); the child
/// adds up (its clock on receipt - stamp). Returns that sum in seconds (the
/// gaps are not counted), so seconds / n is the mean wake-up latency.
double shm_ring_wakeup(Wake wake, std::uint64_t n);

/// CLOCK_MONOTONIC in ns (the clock wake-up stamps use; one clock for every
/// process of the machine).
std::uint64_t monotonic_ns() noexcept;

// ------------------------------------------------------ kernel byte streams

/// A kernel byte stream between this process and a forked child.
enum class Link {
  pipe,         ///< two pipe(2)s, one per direction
  unix_stream,  ///< socketpair(AF_UNIX, SOCK_STREAM)
  tcp,          ///< TCP over 127.0.0.1, TCP_NODELAY
};
const char* to_string(Link l) noexcept;

/// n round trips of a `size`-byte message (one write() per message).
double link_pingpong(Link link, std::size_t size, std::uint64_t n);

/// n messages of `size` bytes one way (one write() per message); the child
/// reads small messages through a 64 KiB buffer, messages of 4 KiB or more
/// with exact reads, verifies each and acknowledges the total; the clock stops
/// at that acknowledgement.
double link_stream(Link link, std::size_t size, std::uint64_t n);

// ----------------------------------------------------------------- memcpy

/// n copies of `size` bytes between two page-aligned buffers, one thread.
double memcpy_copy(std::size_t size, std::uint64_t n);

// ----------------------------------------------------------------- helpers

/// True when cross-process floors pin their two sides (2+ allowed CPUs and
/// the environment variable PIN is not "0").
bool pinning_enabled() noexcept;

/// Unlinks every shm segment a floor currently holds. Async-signal-safe: call
/// it from a SIGINT/SIGTERM handler so an interrupted run leaves nothing in
/// /dev/shm. (Segments are unlinked anyway as soon as the child has opened
/// them, so only the set-up window needs this.)
void unlink_live_segments() noexcept;

}  // namespace cspbench::floors
