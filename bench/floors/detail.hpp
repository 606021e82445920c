// detail.hpp: private helpers of the floors: checks, page-aligned buffers,
// pinning, forked children, full reads and writes, message stamps, POSIX shm
// segments. Not part of the floors' interface.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "floors.hpp"

namespace cspbench::floors::detail {

[[noreturn]] void fail(const char* what, const char* file, int line);
[[noreturn]] void fail_errno(const char* what, const char* file, int line);

// Always on (not assert): this is how every floor verifies its data.
#define FLOOR_CHECK(cond) \
  do { if (!(cond)) ::cspbench::floors::detail::fail("check failed: " #cond, __FILE__, __LINE__); } while (0)
// For syscalls that return -1 and set errno on failure.
#define FLOOR_SYS(call)                                                                     \
  ([&] {                                                                                    \
    auto r_ = (call);                                                                       \
    if (r_ == -1) ::cspbench::floors::detail::fail_errno(#call, __FILE__, __LINE__);        \
    return r_;                                                                              \
  }())

inline double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Keeps the compiler from discarding stores into a buffer.
template <class T>
inline void keep(T const& v) { asm volatile("" : : "g"(&v) : "memory"); }

void check_size(std::size_t size);

// Page-aligned, zero-filled byte buffer: every copy in the floors has source
// and destination at the same page offset.
class PageBuf {
 public:
  explicit PageBuf(std::size_t size, unsigned char fill = 0);
  ~PageBuf();
  PageBuf(const PageBuf&) = delete;
  PageBuf& operator=(const PageBuf&) = delete;
  unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::size_t size_;     // usable bytes
  unsigned char* data_;  // aligned_alloc(4096, size_ rounded up to pages)
};

// Sequence stamp: seq in the first 8 bytes and, for messages of 16 bytes or
// more, ~seq in the last 8, so a torn or stale message fails the check.
void stamp(unsigned char* msg, std::size_t size, std::uint64_t seq);
bool stamp_is(const unsigned char* msg, std::size_t size, std::uint64_t seq);

// ------------------------------------------------------------------ pinning

// The two CPUs the sides run on: the first two in this thread's affinity
// mask. Returns false when pinning is off (PIN=0 or fewer than 2 CPUs).
bool pin_cpus(int& parent_cpu, int& child_cpu);

// Pins the calling thread to `cpu` for its lifetime and restores the previous
// mask afterwards; does nothing when cpu < 0.
class PinScope {
 public:
  explicit PinScope(int cpu);
  ~PinScope();
  PinScope(const PinScope&) = delete;
  PinScope& operator=(const PinScope&) = delete;

 private:
  cpu_set_t saved_{};    // affinity before the pin
  bool active_ = false;  // whether saved_ must be restored
};

// ------------------------------------------------------------------ children

// A forked child running `body`. The child dies with its parent
// (PR_SET_PDEATHSIG), pins itself to `cpu` (if >= 0), exits 0 when body
// returns and 2 (after a message on stderr) when it throws.
// The destructor kills and reaps a child that was not joined.
class Child {
 public:
  Child(const std::function<void()>& body, int cpu);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Waits for the child; throws Failure unless it exited with status 0.
  void join();
  // True while the child has not exited (does not reap it).
  bool alive() const;
  // Throws Failure if the child has exited (for wait loops on the parent side).
  void check_alive() const;

 private:
  pid_t pid_ = -1;  // -1 once reaped
};

// Spins with cpu_relax() until ready() holds; every few thousand rounds checks
// that `peer` (if given) still lives and yields the CPU on a 1-CPU machine.
template <class Ready>
void spin_until(Ready&& ready, const Child* peer) {
  for (std::uint32_t spins = 0; !ready(); ++spins) {
    cpu_relax();
    if ((spins & 0xFFF) == 0xFFF) {
      if (peer) peer->check_alive();
      sched_yield();
    }
  }
}

// -------------------------------------------------------------------- fd I/O

// Full read/write that retries on EINTR and short transfers; throw Failure on
// error or end of file (a peer that closed early).
void write_all(int fd, const void* p, std::size_t len);
void read_all(int fd, void* p, std::size_t len);
void send_u64(int fd, std::uint64_t v);
std::uint64_t recv_u64(int fd);

// Waits until fd is readable, checking every 100 ms that peer still lives.
void wait_readable(int fd, const Child& peer);

// Closes fd on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;  // owned descriptor or -1
};

// ----------------------------------------------------------------------- shm

// A POSIX shm segment created by the parent under a unique name
// (/csp-bench-<pid>-<k>). The name is registered for unlink_live_segments()
// until unlink() (call it once the child has opened the segment) or the
// destructor.
class ShmSegment {
 public:
  explicit ShmSegment(std::size_t bytes);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  void* data() const { return data_; }
  const char* name() const { return name_; }
  std::size_t size() const { return bytes_; }
  void unlink() noexcept;

  // Opens an existing segment by name and maps it (the child's side).
  static void* attach(const char* name, std::size_t bytes);

 private:
  char name_[64] = {};     // "/csp-bench-<pid>-<k>"
  std::size_t bytes_ = 0;  // mapped length
  void* data_ = nullptr;   // mapping in this process
  int slot_ = -1;          // index in the live-segment table, -1 once unlinked
};

}  // namespace cspbench::floors::detail
