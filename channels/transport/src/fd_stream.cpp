// fd_stream.cpp: FdStream, the fd registry of stream.hpp, and the pipe,
// socketpair and TCP links of fd_stream.hpp.
#include <csp/transport/fd_stream.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include <csp/error.hpp>
#include <csp/runtime.hpp>

#include "fork_support.hpp"

namespace csp::transport_detail {

// ---- fd registry -------------------------------------------------------------------
// Invariant: g_fds holds every fd a transport opened and has not closed;
// guarded by g_fds_mutex, which os_process holds across fork() so the child
// sees a consistent set.
namespace {
std::mutex g_fds_mutex;
std::set<int>& tracked() {
  static auto* fds = new std::set<int>;  // never destroyed: used until _exit
  return *fds;
}
}  // namespace

void track_fd(int fd) noexcept {
  if (fd < 0) return;
  std::lock_guard lock(g_fds_mutex);
  try {
    tracked().insert(fd);
  } catch (...) {  // out of memory: the fd just is not closed in children
  }
}

void untrack_fd(int fd) noexcept {
  if (fd < 0) return;
  std::lock_guard lock(g_fds_mutex);
  tracked().erase(fd);
}

void close_tracked(int fd) noexcept {
  if (fd < 0) return;
  untrack_fd(fd);
  ::close(fd);
}

void lock_fds_for_fork() noexcept { g_fds_mutex.lock(); }
void unlock_fds_after_fork() noexcept { g_fds_mutex.unlock(); }

void close_tracked_except_locked(const std::vector<int>& keep) noexcept {
  auto& fds = tracked();
  for (auto it = fds.begin(); it != fds.end();) {
    if (std::find(keep.begin(), keep.end(), *it) == keep.end()) {
      ::close(*it);
      it = fds.erase(it);
    } else {
      ++it;
    }
  }
}

// ---- link kinds ---------------------------------------------------------------------

namespace {
std::atomic<int> g_default_kind{-1};  // -1: read CSP_TRANSPORT
}

const char* to_string(LinkKind kind) noexcept {
  switch (kind) {
    case LinkKind::shm: return "shm";
    case LinkKind::pipe: return "pipe";
    case LinkKind::unix_socket: return "unix";
    case LinkKind::tcp: return "tcp";
  }
  return "?";
}

std::optional<LinkKind> parse_link_kind(std::string_view text) noexcept {
  if (text == "shm") return LinkKind::shm;
  if (text == "pipe") return LinkKind::pipe;
  if (text == "socket" || text == "unix") return LinkKind::unix_socket;
  if (text == "tcp") return LinkKind::tcp;
  return std::nullopt;
}

LinkKind default_link_kind() {
  int forced = g_default_kind.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<LinkKind>(forced);
  const char* env = std::getenv("CSP_TRANSPORT");
  if (!env || !*env) return LinkKind::shm;
  if (auto kind = parse_link_kind(env)) return *kind;
  throw TransportError(std::string("csp: CSP_TRANSPORT='") + env +
                       "' is not a transport (use shm, pipe, socket, unix or tcp)");
}

void set_default_link_kind(std::optional<LinkKind> kind) noexcept {
  g_default_kind.store(kind ? static_cast<int>(*kind) : -1, std::memory_order_relaxed);
}

LinkKind link_kind_for(csp::transport preferred) {
  switch (preferred) {
    case csp::transport::shm: return LinkKind::shm;
    case csp::transport::pipe: return LinkKind::pipe;
    case csp::transport::socket: return LinkKind::unix_socket;
    case csp::transport::automatic:
    case csp::transport::inproc:
      break;
  }
  return default_link_kind();
}

void ignore_sigpipe() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current{};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      struct sigaction ignore{};
      ignore.sa_handler = SIG_IGN;
      ::sigemptyset(&ignore.sa_mask);
      ::sigaction(SIGPIPE, &ignore, nullptr);
    }
  });
}

// ---- FdStream -----------------------------------------------------------------------

namespace {
void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

using csp::detail::Clock;

std::int64_t default_max_spin_ns() noexcept {
  static const std::int64_t value = csp::detail::SpinBudget::max_ns_from_env("CSP_FD_SPIN_US", 50);
  return value;
}

std::int64_t ns_between(Clock::time_point from, Clock::time_point to) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

}  // namespace

// ---- spinning ------------------------------------------------------------------------
// A read or write by a thread that would block polls its fd (poll(2) with
// no timeout, yielding the CPU between polls) for a while before it parks
// in wait_fd. On a
// small VM a parked process costs its waker a wake-up of 10-65 us (the vCPU
// it sleeps on halts), and the channel protocol's replies come back much
// sooner than that: a remote ping-pong sends four one-way messages per
// round trip, each of which would otherwise find its reader parked.
//
// Who: a thread (main, a thread_process, the body of an os_process child).
// A coroutine parks at once in its worker's reactor, which waits for all of
// the worker's fds in one epoll_wait: a home's frame servers are
// coroutines, and their spins rarely caught a message (the remote end's
// answer comes after its own round trip), while with another program busy
// on the machine they took the CPU from the processes that had work: with
// a 5 us coroutine spin, loaded commstime went 13.3 -> 16.2 us/comm (pipe),
// 17.5 -> 24.8 (unix), and 4 KiB stream-up 388 k -> 229 k msg/s (pipe);
// without it these stay at the base figures, and on an idle machine the
// child's spin keeps most of the gain. Its waits are marked `soon`
// (wait_fd) instead: once the worker has nothing to run it polls its whole
// reactor (epoll_wait with a zero timeout, sched_yield between polls; see
// Worker::spin_for_fds) before it sleeps, so an answer that comes while the
// worker is idle anyway finds it awake, and a worker with work never
// spins. Without that poll the parent of a unix-socket ping-pong slept in
// epoll_wait for each of the two frames it waits for per round trip (2
// context switches per round trip, against 0.2 over a pipe, whose frames
// happened to arrive before the worker slept); with it, csp-bench
// ping-pong hops 8 B / 4 KiB / 64 KiB: unix 17 / 21 / 28 -> 8-9.6 / 9 / 17
// us, tcp 24 / 26-27 / 40 -> 11-14 / 12-17 / 27-30 us, pipe 4 KiB 10 -> 8.
//
// How long (SpinBudget, per stream and role): up to max_ns
// (CSP_FD_SPIN_US, 50 us), adaptively as the shm ring: after a few waits in
// a row longer than that the peer is slow and the spin is short, with a full
// one now and then (csp/detail/spin_budget.hpp).
//
// When not at all (process-wide): when the CPUs are contended. A spin that
// finds it lost its CPU to another thread (its system calls took longer
// than kDescheduledNs) parks, and no wait of this process spins (nor an
// idle worker polls its reactor) for the next 20 ms, doubling up to 1 s
// while the spins after each such period keep losing their CPU (the
// runtime keeps that record: csp/detail/spin_budget.hpp). On busy CPUs spinning
// does not pay: a vCPU that does not halt wakes a thread quickly anyway, a
// thread that parks is woken ahead of the threads that kept running (the
// scheduler credits sleepers), and a sched_yield may wait out another
// program's whole time slice.
//
// Unlike the shm ring's spin, this one calls sched_yield every round (its
// rounds are system calls anyway): with three OS processes on two cores
// the thread we wait for may be waiting for our CPU. Measured with one
// other program busy beside csp-bench (and coroutines spinning too, 5 us):
// the same spin without the yield took commstime from 14 to 42 us per
// communication over a pipe (unix 18 -> 42, tcp 25 -> 52), and ping-pong
// hops from 8.5 to 17 us. The contended-CPU check above bounds what a
// yield can cost.
namespace {
// What a wait whose spin lost its CPU counts as: a long one.
constexpr std::int64_t kDescheduledWait = std::numeric_limits<std::int64_t>::max();
using csp::detail::cpus_contended;
}  // namespace


// One wait of a read or write: the caller retries its non-blocking call
// after each again() that returns true. again() polls the fd, yielding the
// CPU between polls, until the bound of this wait, then parks in wait_fd until
// the fd is ready or the deadline passes. The deadline is checked on every
// round; a hang-up or error ends the spin like readiness does, and the
// retried call then reports it (read(2) returns 0 at end of stream,
// write(2) fails with EPIPE), so spinning never hides a closed or dead peer.
class FdStream::Wait {
 public:
  Wait(SpinBudget& budget, Deadline deadline) noexcept : budget_(budget), deadline_(deadline) {}

  // The call would block: spins, then parks, until `fd` is probably ready
  // for `events` (EPOLLIN/EPOLLOUT bits); false once the deadline has passed.
  bool again(int fd, std::uint32_t events, const char* what) {
    auto now = Clock::now();
    if (limit_ < 0) {
      start_ = now;
      spins_ = !csp::detail::in_coroutine() && !cpus_contended(now);
      limit_ = spins_ ? budget_.next_limit_ns() : 0;
    }
    // The spin asks poll(2) rather than retrying the call: a read(2) or
    // write(2) of a pipe takes the pipe's mutex even when it finds nothing,
    // and contends with the peer's write or read of the same pipe; poll
    // only looks.
    static_assert(EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLRDHUP == POLLRDHUP);
    pollfd probe{fd, static_cast<short>(events), 0};
    for (;;) {
      if (now >= deadline_) {
        timed_out(now);
        return false;
      }
      if (descheduled_ || ns_between(start_, now) >= limit_) break;
      // Let other threads on this CPU run: with three OS processes on two
      // cores, the one we wait for may be among them.
      const auto before = now;
      ::sched_yield();
      if (::poll(&probe, 1, 0) != 0) return true;  // ready, hung up or failed: the call tells
      now = Clock::now();
      if (ns_between(before, now) > csp::detail::kDescheduledNs) {
        descheduled_ = true;
        csp::detail::note_cpus_contended(now);
        break;
      }
    }
    if (csp::detail::wait_fd(fd, events, deadline_, what, /*soon=*/true)) return true;
    timed_out(Clock::now());
    return false;
  }
  // The call went through: records how long it waited, if it did.
  void done() noexcept {
    if (spins_) budget_.learn(descheduled_ ? kDescheduledWait : ns_between(start_, Clock::now()));
  }

 private:
  // A deadline that passes within the bound says nothing about the peer; one
  // that passes after a longer wait counts as a long wait.
  void timed_out(Clock::time_point now) noexcept {
    if (spins_ && ns_between(start_, now) > budget_.max_ns) budget_.learn(ns_between(start_, now));
  }

  SpinBudget& budget_;
  Deadline deadline_;
  Clock::time_point start_{};  // when the first try found the fd not ready
  std::int64_t limit_ = -1;    // spin bound of this wait; -1 until the first again()
  bool spins_ = false;         // a thread on calm CPUs: this wait may spin and teaches budget_
  bool descheduled_ = false;   // this spin lost its CPU: counts as a long wait
};

FdStream::FdStream(int read_fd, int write_fd, std::string description)
    : read_fd_(read_fd), write_fd_(write_fd), owner_(::getpid()), description_(std::move(description)) {
  ignore_sigpipe();
  if (read_fd_ == write_fd_) {
    write_fd_ = ::fcntl(read_fd_, F_DUPFD_CLOEXEC, 0);
    if (write_fd_ < 0) {
      close_tracked(read_fd_);
      read_fd_ = -1;
      throw_system_error("csp: dup of " + description_);
    }
  }
  set_nonblocking(read_fd_);
  set_nonblocking(write_fd_);
  track_fd(read_fd_);
  track_fd(write_fd_);
  set_max_spin(std::chrono::nanoseconds(default_max_spin_ns()));
}

FdStream::~FdStream() { close(); }

void FdStream::set_max_spin(std::chrono::nanoseconds bound) noexcept {
  read_spin_ = SpinBudget{};
  write_spin_ = SpinBudget{};
  read_spin_.max_ns = write_spin_.max_ns = std::max<std::int64_t>(0, bound.count());
}

void FdStream::close() noexcept {
  if (read_fd_ < 0 && write_fd_ < 0) return;
  if (::getpid() != owner_) {
    // A copy inherited by an os_process child: the child closed the fds
    // already (their numbers may be reused by now).
    read_fd_ = write_fd_ = -1;
    return;
  }
  close_tracked(read_fd_);
  close_tracked(write_fd_);
  read_fd_ = write_fd_ = -1;
  for (const auto& path : unlink_on_close_) ::unlink(path.c_str());
  unlink_on_close_.clear();
}

std::vector<int> FdStream::fds() const {
  std::vector<int> out;
  if (read_fd_ >= 0) out.push_back(read_fd_);
  if (write_fd_ >= 0) out.push_back(write_fd_);
  return out;
}

void FdStream::fail(const char* op, int error) const {
  if (error == EPIPE || error == ECONNRESET)
    throw TransportError("csp: " + description_ + ": the peer closed the connection (" + op + ": " +
                         std::strerror(error) + ")");
  throw TransportError("csp: " + description_ + ": " + op + ": " + std::strerror(error));
}

void FdStream::write_all(const void* data, std::size_t n) {
  // Most frames go in one write(2) of one buffer: try that before setting
  // up the gathered loop, which finishes a partial or refused write.
  bool refused = false;
  if (write_fd_ >= 0 && n != 0) {
    const ssize_t w = ::write(write_fd_, data, n);
    if (w == static_cast<ssize_t>(n)) return;
    if (w > 0) {
      data = static_cast<const char*>(data) + w;
      n -= static_cast<std::size_t>(w);
    } else if (w < 0 && errno == EAGAIN) {
      refused = true;
    } else if (w < 0 && errno != EINTR) {
      fail("write", errno);
    }
  }
  ConstBuffer part{data, n};
  write_gathered(&part, 1, refused);
}

void FdStream::write_all_v(const ConstBuffer* parts, std::size_t count) { write_gathered(parts, count, false); }

void FdStream::write_gathered(const ConstBuffer* parts, std::size_t count, bool refused) {
  if (write_fd_ < 0) throw TransportError("csp: " + description_ + ": write on a closed stream");
  constexpr std::size_t kMaxParts = 8;
  iovec iov[kMaxParts];
  std::size_t done = 0;  // parts fully written
  std::size_t offset = 0;  // bytes of parts[done] already written
  std::optional<Wait> wait;  // made when a write would block
  if (refused) {  // the caller's write(2) would have blocked: wait before the next
    wait.emplace(write_spin_, csp::detail::forever);
    wait->again(write_fd_, EPOLLOUT, "write");
  }
  while (done < count) {
    std::size_t n = 0;
    for (std::size_t i = done; i < count && n < kMaxParts; ++i) {
      const auto* base = static_cast<const char*>(parts[i].data);
      std::size_t skip = i == done ? offset : 0;
      if (parts[i].size == skip) continue;
      iov[n].iov_base = const_cast<char*>(base + skip);
      iov[n].iov_len = parts[i].size - skip;
      ++n;
    }
    if (n == 0) break;
    ssize_t w = n == 1 ? ::write(write_fd_, iov[0].iov_base, iov[0].iov_len) : ::writev(write_fd_, iov, static_cast<int>(n));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (!wait) wait.emplace(write_spin_, csp::detail::forever);
        wait->again(write_fd_, EPOLLOUT, "write");
        continue;
      }
      fail("write", errno);
    }
    auto left = static_cast<std::size_t>(w);
    while (done < count) {
      std::size_t rest = parts[done].size - offset;
      if (left < rest) {
        offset += left;
        break;
      }
      left -= rest;
      ++done;
      offset = 0;
    }
    // A partial write is progress: the next wait is a new one.
    if (wait) {
      wait->done();
      wait.reset();
    }
  }
}

std::optional<std::size_t> FdStream::read_some(void* data, std::size_t n, Deadline deadline) {
  if (read_fd_ < 0) throw TransportError("csp: " + description_ + ": read on a closed stream");
  // A FIFO read before its writer ever opened it would report end of file.
  // And when this wait will not spin, after a read that emptied the fd the
  // next one would most likely find nothing (a request/reply exchange):
  // wait first, saving a read(2).
  const auto now = Clock::now();
  if (wait_first_read_ || (drained_ && deadline > now && (read_spin_.max_ns == 0 || cpus_contended(now)))) {
    if (!csp::detail::wait_fd(read_fd_, EPOLLIN | EPOLLRDHUP, deadline, "read", /*soon=*/!wait_first_read_)) return std::nullopt;
    wait_first_read_ = false;
  }
  Wait wait(read_spin_, deadline);
  for (;;) {
    ssize_t r = ::read(read_fd_, data, n);
    if (r >= 0) {
      drained_ = static_cast<std::size_t>(r) < n;
      wait.done();
      return static_cast<std::size_t>(r);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) fail("read", errno);
    if (!wait.again(read_fd_, EPOLLIN | EPOLLRDHUP, "read")) return std::nullopt;
  }
}

// ---- links ---------------------------------------------------------------------------

namespace {

/// A link whose two ends are already-connected fd pairs.
class FdForkLink final : public ForkLink {
 public:
  FdForkLink(int parent_read, int parent_write, int child_read, int child_write, const char* kind)
      : parent_{parent_read, parent_write}, child_{child_read, child_write}, kind_(kind) {
    for (int fd : {parent_read, parent_write, child_read, child_write}) track_fd(fd);
  }
  ~FdForkLink() override {
    release(parent_);
    release(child_);
  }
  std::unique_ptr<ByteStream> parent_end() override {
    release(child_);
    return take(parent_, std::string(kind_) + " to child pid " + std::to_string(child_pid_hint()));
  }
  std::unique_ptr<ByteStream> child_end() override {
    release(parent_);
    return take(child_, std::string(kind_) + " to parent pid " + std::to_string(::getppid()));
  }

 private:
  struct Pair {
    int read, write;
  };
  static void release(Pair& p) noexcept {
    close_tracked(p.read);
    if (p.write != p.read) close_tracked(p.write);
    p.read = p.write = -1;
  }
  static std::unique_ptr<ByteStream> take(Pair& p, std::string description) {
    if (p.read < 0) throw TransportError("csp: a fork link end was taken twice");
    Pair q = std::exchange(p, Pair{-1, -1});
    untrack_fd(q.read);
    untrack_fd(q.write);  // FdStream tracks what it keeps
    return std::make_unique<FdStream>(q.read, q.write, std::move(description));
  }
  static long child_pid_hint() noexcept { return last_forked_pid(); }

  Pair parent_;       // fds the parent keeps
  Pair child_;        // fds the child keeps
  const char* kind_;  // for descriptions
};

std::unique_ptr<ForkLink> make_pipe_link() {
  int down[2], up[2];  // down: parent -> child; up: child -> parent
  if (::pipe2(down, O_CLOEXEC | O_NONBLOCK) != 0) throw_system_error("csp: pipe");
  if (::pipe2(up, O_CLOEXEC | O_NONBLOCK) != 0) {
    int e = errno;
    ::close(down[0]);
    ::close(down[1]);
    errno = e;
    throw_system_error("csp: pipe");
  }
  // Larger pipes let a big message go in one write; failure is harmless.
  // Transfers are as large as the callers ask. A pipe recycles at most two
  // freed pages, so a raw 4 KiB write/read ping-pong never allocates one,
  // while a batch of frames allocates (and memcg-charges) a page per 4 KiB
  // and its reader frees them; capping reads and writes at 8 KiB to get the
  // recycling back cost more in system calls than it saved (csp-bench-like
  // 4 KiB stream, read-ahead batches: 500 k -> 308 k msg/s; reads alone
  // 335 k).
  for (int fd : {down[1], up[1]}) (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
  return std::make_unique<FdForkLink>(up[0], down[1], down[0], up[1], "pipe");
}

std::unique_ptr<ForkLink> make_socketpair_link() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    throw_system_error("csp: socketpair");
  for (int fd : sv) widen_unix_send_buffer(fd);
  return std::make_unique<FdForkLink>(sv[0], sv[0], sv[1], sv[1], "unix socket");
}

std::unique_ptr<ForkLink> make_tcp_link() {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) throw_system_error("csp: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int client = -1, server = -1;
  auto cleanup = [&] {
    int e = errno;
    for (int fd : {listener, client, server})
      if (fd >= 0) ::close(fd);
    errno = e;
  };
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    cleanup();
    throw_system_error("csp: tcp link listener on 127.0.0.1");
  }
  client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  // Loopback connect completes within the call (the listener's backlog takes it).
  if (client < 0 || ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    cleanup();
    throw_system_error("csp: tcp link connect to 127.0.0.1");
  }
  server = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (server < 0) {
    cleanup();
    throw_system_error("csp: tcp link accept");
  }
  ::close(listener);
  int one = 1;
  for (int fd : {client, server}) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::make_unique<FdForkLink>(server, server, client, client, "tcp");
}

}  // namespace

void widen_unix_send_buffer(int fd) noexcept {
  int bytes = kUnixSendBuffer;
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);  // capped at net.core.wmem_max
}

std::unique_ptr<ForkLink> make_fork_link(LinkKind kind) {
  switch (kind) {
    case LinkKind::shm:
#if defined(CSP_HAVE_SHM) || __has_include(<csp/transport/shm.hpp>)
      return make_shm_fork_link();
#else
      // TODO(shm): the shm ring pair is not built in yet; a socketpair keeps
      // os_process working meanwhile.
      return make_socketpair_link();
#endif
    case LinkKind::pipe: return make_pipe_link();
    case LinkKind::unix_socket: return make_socketpair_link();
    case LinkKind::tcp: return make_tcp_link();
  }
  throw TransportError("csp: unknown link kind");
}

}  // namespace csp::transport_detail
