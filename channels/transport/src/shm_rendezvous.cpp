// shm_rendezvous.cpp: shm://name between unrelated programs (ShmListener,
// shm_connect).
//
// The host binds a unix SOCK_SEQPACKET socket at the abstract address
// "\0csp-shm:<name>". For each connection it checks the peer's uid, makes a
// fresh segment (a sealed memfd) and four eventfds, and sends
//   Hello {magic, version, ring_bytes}  + SCM_RIGHTS [memfd, efd0..efd3]
// in one message; the connecting side maps the segment, checks its header
// and answers Ack {magic, version}. Both keep the connection as the
// lifeline (it carries nothing more; its EOF means the peer is gone). Nothing
// gets a name in the file system or /dev/shm, so a SIGKILL leaves nothing.
//
// No shared state: each call runs on its own stack; ShmListener is used by
// one process at a time (callers serialise accept()).
#include <csp/transport/shm.hpp>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include <csp/error.hpp>
#include <csp/runtime.hpp>

namespace csp::transport_detail {
namespace {

using csp::detail::Clock;

constexpr std::uint64_t kHelloMagic = 0x4f4c4c45482d5343ull;  // "CS-HELLO"
constexpr std::uint64_t kAckMagic = 0x4b43412d4d485343ull;    // "CSHM-ACK"
constexpr std::uint32_t kRendezvousVersion = 1;
constexpr std::size_t kMaxName = 90;
constexpr char kPrefix[] = "csp-shm:";
// How long a host waits for one connecting process to finish its handshake.
constexpr auto kHandshakeLimit = std::chrono::seconds(10);

struct Hello {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t fd_count;
  std::uint64_t ring_bytes;
};
struct Ack {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t reserved;
};

std::string address_text(std::string_view name) { return "shm://" + std::string(name); }

[[noreturn]] void fail(std::string_view name, const std::string& what) {
  throw TransportError(address_text(name) + ": " + what + ": " + std::strerror(errno));
}

void check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName || name.find('\0') != std::string_view::npos)
    throw TransportError(address_text(name) + ": a name must have 1 to " + std::to_string(kMaxName) +
                         " bytes and no NUL");
}

socklen_t make_address(std::string_view name, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  addr.sun_path[0] = '\0';  // abstract namespace: no file, gone with the socket
  std::memcpy(addr.sun_path + 1, kPrefix, sizeof kPrefix - 1);
  std::memcpy(addr.sun_path + sizeof kPrefix, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof kPrefix + name.size());
}

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    close_tracked(fd_);
    fd_ = fd;
  }
  // Takes a freshly opened fd (or -1) and registers it with track_fd().
  void adopt(int fd) noexcept {
    if (fd >= 0) track_fd(fd);
    reset(fd);
  }

 private:
  int fd_;
};

// Receives one message of exactly `size` bytes (and up to `max_fds` fds) on
// a non-blocking socket, parking until it arrives. Returns false when the
// deadline passes or the peer closed first.
bool receive(int sock, void* data, std::size_t size, Fd* fds, std::size_t max_fds, std::size_t& got_fds,
             Deadline deadline, std::string_view name) {
  got_fds = 0;
  for (;;) {
    iovec iov{data, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!csp::detail::wait_fd(sock, EPOLLIN, deadline, "shm handshake")) return false;
        continue;
      }
      if (errno == ECONNRESET) return false;
      fail(name, "recvmsg");
    }
    // Take every fd that came, so none leaks whatever happens next.
    std::size_t extra = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (got_fds < max_fds) {
          fds[got_fds++].adopt(fd);
        } else {
          ::close(fd);
          ++extra;
        }
      }
    }
    if (r == 0) return false;
    if (static_cast<std::size_t>(r) != size || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || extra != 0)
      throw TransportError(address_text(name) + ": malformed handshake message (is the peer csp?)");
    return true;
  }
}

void send_message(int sock, const void* data, std::size_t size, const int* fds, std::size_t fd_count,
                  std::string_view name) {
  iovec iov{const_cast<void*>(data), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd_count != 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * fd_count);
  }
  for (;;) {
    // A fresh SEQPACKET connection has room for one small message.
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(size)) return;
    if (errno == EINTR) continue;
    fail(name, "sendmsg");
  }
}

std::unique_ptr<ShmStream> host_handshake(Fd conn, std::string_view name, const ShmOptions& options,
                                          Deadline deadline) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) fail(name, "SO_PEERCRED");
  if (cred.uid != ::geteuid())
    throw TransportError(address_text(name) + ": refused a process of uid " + std::to_string(cred.uid));
  int memfd_raw = -1;
  auto segment = shm_detail::create_segment(options, memfd_raw);
  Fd memfd(memfd_raw);
  Fd events[4];
  for (Fd& e : events) {
    e.adopt(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (e.get() < 0) fail(name, "eventfd");
  }
  const Hello hello{kHelloMagic, kRendezvousVersion, 5, shm_detail::segment_ring_bytes(*segment)};
  const int fds[5] = {memfd.get(), events[0].get(), events[1].get(), events[2].get(), events[3].get()};
  send_message(conn.get(), &hello, sizeof hello, fds, 5, name);
  memfd.reset();  // the peer has its own copy now
  Ack ack{};
  std::size_t got = 0;
  if (!receive(conn.get(), &ack, sizeof ack, nullptr, 0, got, deadline, name)) return nullptr;
  if (ack.magic != kAckMagic || ack.version != kRendezvousVersion)
    throw TransportError(address_text(name) + ": malformed handshake reply (is the peer csp?)");
  std::string description = address_text(name) + " (segment " + shm_detail::segment_name(*segment) + ")";
  return std::make_unique<ShmStream>(std::move(segment), 0,
                                     std::array<int, 4>{events[0].release(), events[1].release(),
                                                        events[2].release(), events[3].release()},
                                     conn.release(), std::move(description), options);
}

}  // namespace

ShmListener::ShmListener(std::string_view name, const ShmOptions& options) : name_(name), options_(options) {
  check_name(name);
  Fd sock;
  sock.adopt(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) fail(name, "socket");
  sockaddr_un addr;
  const socklen_t len = make_address(name, addr);
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    if (errno == EADDRINUSE) throw TransportError(describe() + ": already hosted by another listener");
    fail(name, "bind");
  }
  if (::listen(sock.get(), SOMAXCONN) != 0) fail(name, "listen");
  listen_fd_ = sock.release();
}

ShmListener::~ShmListener() { close_tracked(listen_fd_); }

void ShmListener::close() noexcept {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  // Refuses new connections and wakes a parked accept (POLLHUP); the fd
  // itself stays open until the destructor, as accept() may be using it.
  ::shutdown(listen_fd_, SHUT_RDWR);
}

std::unique_ptr<Listener> shm_listen(std::string_view name, const ShmOptions& options) {
  return std::make_unique<ShmListener>(name, options);
}

std::unique_ptr<Listener> shm_listen(std::string_view name) { return shm_listen(name, ShmOptions{}); }

std::string ShmListener::describe() const { return address_text(name_); }

std::unique_ptr<ByteStream> ShmListener::accept(Deadline deadline) {
  for (;;) {
    if (closed_.load(std::memory_order_acquire)) return nullptr;
    Fd conn;
    conn.adopt(::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn.get() < 0) {
      if (closed_.load(std::memory_order_acquire)) return nullptr;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!csp::detail::wait_fd(listen_fd_, EPOLLIN, deadline, "shm accept")) return nullptr;
        continue;
      }
      fail(name_, "accept");
    }
    try {
      const Deadline limit = std::min(deadline, Clock::now() + kHandshakeLimit);
      if (auto stream = host_handshake(std::move(conn), name_, options_, limit)) return stream;
    } catch (const TransportError&) {
      // A bad or vanished peer: drop it and wait for the next one. The
      // connecting side reports its own error.
    }
    if (Clock::now() >= deadline) return nullptr;
  }
}

std::unique_ptr<ByteStream> shm_connect(std::string_view name, Deadline deadline) {
  check_name(name);
  sockaddr_un addr;
  const socklen_t len = make_address(name, addr);
  Fd sock;
  auto backoff = std::chrono::microseconds(500);
  for (;;) {
    sock.adopt(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) fail(name, "socket");
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) break;
    // Nobody hosts the name yet, or its backlog is full: try again later.
    if (errno != ECONNREFUSED && errno != ENOENT && errno != EAGAIN && errno != EINTR) fail(name, "connect");
    const auto now = Clock::now();
    if (now >= deadline) return nullptr;
    csp::sleep_until(std::min<Deadline>(deadline, now + backoff));
    backoff = std::min<std::chrono::microseconds>(backoff * 2, std::chrono::milliseconds(50));
  }
  Hello hello{};
  Fd fds[5];
  std::size_t got = 0;
  if (!receive(sock.get(), &hello, sizeof hello, fds, 5, got, deadline, name)) {
    if (Clock::now() >= deadline) return nullptr;
    throw TransportError(address_text(name) + ": the host closed the connection during the handshake"
                         " (another user's listener?)");
  }
  if (hello.magic != kHelloMagic)
    throw TransportError(address_text(name) + ": malformed handshake (is the host csp?)");
  if (hello.version != kRendezvousVersion)
    throw TransportError(address_text(name) + ": host speaks shm protocol version " +
                         std::to_string(hello.version) + ", this process " +
                         std::to_string(kRendezvousVersion));
  if (hello.fd_count != 5 || got != 5)
    throw TransportError(address_text(name) + ": handshake carried " + std::to_string(got) +
                         " descriptors, expected 5");
  auto segment = shm_detail::attach_segment(fds[0].release());
  if (shm_detail::segment_ring_bytes(*segment) != hello.ring_bytes)
    throw TransportError(address_text(name) + ": segment does not match the handshake");
  const Ack ack{kAckMagic, kRendezvousVersion, 0};
  send_message(sock.get(), &ack, sizeof ack, nullptr, 0, name);
  std::string description = address_text(name) + " (segment " + shm_detail::segment_name(*segment) + ")";
  return std::make_unique<ShmStream>(
      std::move(segment), 1,
      std::array<int, 4>{fds[1].release(), fds[2].release(), fds[3].release(), fds[4].release()},
      sock.release(), std::move(description), ShmOptions{});
}

}  // namespace csp::transport_detail
