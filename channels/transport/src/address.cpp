// address.cpp: the untyped half of csp/transport/address.hpp: parsing
// addresses, listening (tcp, unix, FIFO; shm through the shm transport),
// dialing with retries, and the registry of hosted channels with one
// acceptor coroutine per listening endpoint.
//
// Invariants
// - registry().mutex guards the endpoint map and the address map. Each
//   Endpoint's own mutex guards its channel map; the registry lock is taken
//   first when both are needed.
// - An endpoint's acceptor holds the endpoint (shared_ptr) and runs until its
//   listener is closed (unhost of its last channel, or exit).
#include <csp/transport/address.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <csp/runtime.hpp>
#include <csp/transport/fd_stream.hpp>

#include "fork_support.hpp"

#if defined(CSP_HAVE_SHM) || __has_include(<csp/transport/shm.hpp>)
#define CSP_TRANSPORT_SHM 1
#endif

namespace csp::transport_detail {

// ---- parsing ---------------------------------------------------------------------

namespace {
[[noreturn]] void bad_address(std::string_view text, const std::string& why) {
  throw TransportError("csp: bad address '" + std::string(text) + "': " + why +
                       " (expected tcp://HOST:PORT/NAME, unix:///PATH/NAME, pipe:///PATH or shm://NAME)");
}
}  // namespace

Address parse_address(std::string_view text) {
  Address a;
  a.text = std::string(text);
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) bad_address(text, "no scheme");
  const std::string_view scheme = text.substr(0, sep);
  std::string_view rest = text.substr(sep + 3);
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    std::string_view query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    constexpr std::string_view key = "buffer=";
    if (query.substr(0, key.size()) != key) bad_address(text, "unknown option '" + std::string(query) + "'");
    query.remove_prefix(key.size());
    auto [p, ec] = std::from_chars(query.data(), query.data() + query.size(), a.buffer);
    if (ec != std::errc() || p != query.data() + query.size()) bad_address(text, "buffer= needs a number");
  }
  if (scheme == "tcp") {
    a.scheme = Address::Scheme::tcp;
    const auto slash = rest.find('/');
    std::string_view hostport = rest.substr(0, slash);
    if (slash != std::string_view::npos) a.name = std::string(rest.substr(slash + 1));
    std::string_view port;
    if (!hostport.empty() && hostport.front() == '[') {
      const auto close = hostport.find(']');
      if (close == std::string_view::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':')
        bad_address(text, "an IPv6 host is written [ADDRESS]:PORT");
      a.host = std::string(hostport.substr(1, close - 1));
      port = hostport.substr(close + 2);
    } else {
      const auto colon = hostport.rfind(':');
      if (colon == std::string_view::npos) bad_address(text, "no port");
      a.host = std::string(hostport.substr(0, colon));
      port = hostport.substr(colon + 1);
    }
    if (a.host.empty()) bad_address(text, "no host");
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value > 65535) bad_address(text, "bad port");
    a.port = static_cast<std::uint16_t>(value);
  } else if (scheme == "unix") {
    a.scheme = Address::Scheme::unix_socket;
    const auto slash = rest.rfind('/');
    if (rest.empty() || rest.front() != '/' || slash == 0 || slash == std::string_view::npos)
      bad_address(text, "a unix address is unix:///PATH/NAME (socket at /PATH, channel NAME)");
    a.path = std::string(rest.substr(0, slash));
    a.name = std::string(rest.substr(slash + 1));
    if (a.name.empty()) bad_address(text, "no channel name after the socket path");
  } else if (scheme == "pipe") {
    a.scheme = Address::Scheme::pipe;
    if (rest.empty() || rest.front() != '/') bad_address(text, "a pipe address is pipe:///PATH (absolute)");
    a.path = std::string(rest);
  } else if (scheme == "shm") {
    a.scheme = Address::Scheme::shm;
    if (rest.empty()) bad_address(text, "no shm name");
    a.path = std::string(rest);
  } else {
    bad_address(text, "unknown scheme '" + std::string(scheme) + "'");
  }
  return a;
}

std::string Address::endpoint() const {
  switch (scheme) {
    case Scheme::tcp:
      return "tcp://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
    case Scheme::unix_socket: return "unix://" + path;
    case Scheme::pipe: return "pipe://" + path;
    case Scheme::shm: return "shm://" + path;
  }
  return text;
}

// ---- error handler ------------------------------------------------------------------

namespace {
std::mutex g_handler_mutex;
TransportErrorHandler& handler() {
  static auto* h = new TransportErrorHandler;
  return *h;
}
}  // namespace

void report_transport_error(const TransportError& error) noexcept {
  TransportErrorHandler h;
  {
    std::lock_guard lock(g_handler_mutex);
    h = handler();
  }
  try {
    if (h) h(error);
    else std::fprintf(stderr, "%s\n", error.what());
  } catch (...) {
  }
}

// ---- listeners ---------------------------------------------------------------------------

namespace {

/// TCP_NODELAY (requests are small and latency-bound) and keepalive probes,
/// so a peer host that vanishes without a FIN or RST is noticed (~30 s).
void tune_tcp(int fd) noexcept {
  int one = 1, idle = 10, interval = 5, count = 4;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

/// A listening fd, a stop eventfd, and an epoll set of both to park on.
class FdListenerBase : public Listener {
 public:
  FdListenerBase(int fd, std::string bound) : fd_(fd), bound_(std::move(bound)) {
    stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    set_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (stop_fd_ < 0 || set_fd_ < 0) {
      int e = errno;
      release();
      errno = e;
      throw_system_error("csp: listener for " + bound_);
    }
    for (int f : {fd_, stop_fd_}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = f;
      ::epoll_ctl(set_fd_, EPOLL_CTL_ADD, f, &ev);
    }
    for (int f : {fd_, stop_fd_, set_fd_}) track_fd(f);
  }
  ~FdListenerBase() override {
    close();
    release();
  }
  void close() noexcept override {
    if (closed_.exchange(true)) return;
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(stop_fd_, &one, sizeof one);
    if (!unlink_path_.empty() && owner_ == ::getpid()) ::unlink(unlink_path_.c_str());
  }
  std::string describe() const override { return bound_; }
  std::vector<int> fds() const override { return {fd_, stop_fd_, set_fd_}; }

 protected:
  /// Parks until the listening fd is readable or close(); false on close or deadline.
  bool wait(Deadline deadline) {
    if (closed_.load()) return false;
    if (!csp::detail::wait_fd(set_fd_, EPOLLIN, deadline, "accept")) return false;
    return !closed_.load();
  }
  void release() noexcept {
    for (int* f : {&fd_, &stop_fd_, &set_fd_}) {
      close_tracked(*f);
      *f = -1;
    }
  }

  int fd_ = -1;                       // listening socket or FIFO
  int stop_fd_ = -1;                  // written by close()
  int set_fd_ = -1;                   // epoll of both
  std::string bound_;                 // endpoint as bound
  std::string unlink_path_;           // file to remove on close (unix socket, FIFO)
  pid_t owner_ = ::getpid();          // only the process that bound removes the file
  std::atomic<bool> closed_{false};
};

class SocketListener final : public FdListenerBase {
 public:
  SocketListener(int fd, std::string bound, bool tcp, std::string unlink_path)
      : FdListenerBase(fd, std::move(bound)), tcp_(tcp) {
    unlink_path_ = std::move(unlink_path);
  }
  std::unique_ptr<ByteStream> accept(Deadline deadline) override {
    for (;;) {
      if (closed_.load()) return nullptr;
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int c = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c >= 0) {
        if (tcp_) tune_tcp(c);
        else widen_unix_send_buffer(c);
        return std::make_unique<FdStream>(c, c, describe_peer(c, peer));
      }
      switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          continue;
        case EAGAIN:
          if (!wait(deadline)) return nullptr;
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          report_transport_error(TransportError("csp: " + bound_ + ": accept: " + std::strerror(errno) +
                                                " (retrying in 100 ms)"));
          csp::sleep_for(std::chrono::milliseconds(100));
          continue;
        default:
          throw_system_error("csp: " + bound_ + ": accept");
      }
    }
  }

 private:
  std::string describe_peer(int c, const sockaddr_storage& peer) const {
    char host[INET6_ADDRSTRLEN] = "?";
    if (peer.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      return "tcp://" + std::string(host) + ":" + std::to_string(ntohs(in->sin_port)) + " (client of " + bound_ + ")";
    }
    if (peer.ss_family == AF_INET6) {
      const auto* in = reinterpret_cast<const sockaddr_in6*>(&peer);
      ::inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
      return "tcp://[" + std::string(host) + "]:" + std::to_string(ntohs(in->sin6_port)) + " (client of " + bound_ +
             ")";
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
      return "unix client pid " + std::to_string(cred.pid) + " of " + bound_;
    return "client of " + bound_;
  }
  bool tcp_;  // TCP_NODELAY on accepted sockets
};

// FIFO rendezvous: fixed-size requests, written atomically (below PIPE_BUF).
constexpr std::size_t kFifoRecord = 512;
constexpr char kFifoMagic[8] = {'C', 'S', 'P', 'F', 'I', 'F', 'O', '1'};

class FifoListener final : public FdListenerBase {
 public:
  FifoListener(int fd, std::string bound, std::string path) : FdListenerBase(fd, std::move(bound)) {
    unlink_path_ = std::move(path);
  }
  std::unique_ptr<ByteStream> accept(Deadline deadline) override {
    for (;;) {
      if (closed_.load()) return nullptr;
      ssize_t r = ::read(fd_, record_ + have_, kFifoRecord - have_);
      if (r > 0) {
        have_ += static_cast<std::size_t>(r);
        if (have_ < kFifoRecord) continue;
        have_ = 0;
        if (auto stream = open_pair()) return stream;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno != EAGAIN) throw_system_error("csp: " + bound_ + ": read");
      if (!wait(deadline)) return nullptr;
    }
  }

 private:
  std::unique_ptr<ByteStream> open_pair() {
    std::uint32_t len = 0;
    std::memcpy(&len, record_ + 8, 4);
    if (std::memcmp(record_, kFifoMagic, sizeof kFifoMagic) != 0 || len == 0 || len > kFifoRecord - 12) {
      report_transport_error(TransportError("csp: " + bound_ + ": ignored a malformed connection request"));
      return nullptr;
    }
    const std::string base(record_ + 12, len);
    const std::string c2s = base + ".c2s", s2c = base + ".s2c";
    int in = ::open(c2s.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (in < 0) return nullptr;  // the client gave up
    int out = ::open(s2c.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (out < 0) {  // ENXIO: the client is gone
      ::close(in);
      return nullptr;
    }
    ::unlink(c2s.c_str());
    ::unlink(s2c.c_str());
    (void)::fcntl(out, F_SETPIPE_SZ, 1 << 20);
    return std::make_unique<FdStream>(in, out, "pipe client " + base + " of " + bound_);
  }

  char record_[kFifoRecord];  // a request being read
  std::size_t have_ = 0;      // bytes of record_ read so far
};

int unix_socket_bound(const std::string& path, const std::string& what) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    throw TransportError("csp: " + what + ": socket path longer than " + std::to_string(sizeof addr.sun_path - 1) +
                         " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  for (int attempt = 0;; ++attempt) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_system_error("csp: " + what + ": socket");
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      if (::listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        throw_system_error("csp: " + what + ": listen");
      }
      return fd;
    }
    int e = errno;
    ::close(fd);
    if (e == EADDRINUSE && attempt == 0) {
      // A socket file left by a program that died? Nobody answers on it then.
      int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool alive = probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      int pe = errno;
      if (probe >= 0) ::close(probe);
      if (!alive && (pe == ECONNREFUSED || pe == ENOENT)) {
        ::unlink(path.c_str());
        continue;
      }
      throw TransportError("csp: " + what + ": " + path + " is in use by another program");
    }
    errno = e;
    throw_system_error("csp: " + what + ": bind " + path);
  }
}

std::unique_ptr<Listener> make_listener(const Address& a) {
  const std::string what = "cannot host " + a.text;
  switch (a.scheme) {
    case Address::Scheme::tcp: {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
      addrinfo* res = nullptr;
      const std::string port = std::to_string(a.port);
      if (int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw TransportError("csp: " + what + ": " + ::gai_strerror(rc));
      int fd = -1;
      int error = 0;
      for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
          error = errno;
          continue;
        }
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
          error = errno;
          ::close(fd);
          fd = -1;
        }
      }
      ::freeaddrinfo(res);
      if (fd < 0) throw TransportError("csp: " + what + ": " + std::strerror(error));
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      Address b = a;
      b.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      return std::make_unique<SocketListener>(fd, b.endpoint(), true, std::string());
    }
    case Address::Scheme::unix_socket: {
      int fd = unix_socket_bound(a.path, what);
      return std::make_unique<SocketListener>(fd, a.endpoint(), false, a.path);
    }
    case Address::Scheme::pipe: {
      if (::mkfifo(a.path.c_str(), 0600) != 0) {
        if (errno != EEXIST) throw_system_error("csp: " + what + ": mkfifo " + a.path);
        struct stat st{};
        if (::stat(a.path.c_str(), &st) != 0 || !S_ISFIFO(st.st_mode))
          throw TransportError("csp: " + what + ": " + a.path + " exists and is not a FIFO");
        int probe = ::open(a.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (probe >= 0) {
          ::close(probe);
          throw TransportError("csp: " + what + ": another program serves " + a.path);
        }
        // ENXIO: a FIFO left by a program that died; take it over.
      }
      int fd = ::open(a.path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) throw_system_error("csp: " + what + ": open " + a.path);
      return std::make_unique<FifoListener>(fd, a.endpoint(), a.path);
    }
    case Address::Scheme::shm:
#if defined(CSP_TRANSPORT_SHM)
      return shm_listen(a.path);
#else
      throw TransportError("csp: " + what + ": shm:// addresses need the shm transport, which this build lacks");
#endif
  }
  throw TransportError("csp: " + what);
}

// ---- dialing -------------------------------------------------------------------------

std::unique_ptr<ByteStream> dial_tcp(const Address& a, Deadline deadline, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(a.port);
  if (int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    if (rc == EAI_AGAIN) {
      why = ::gai_strerror(rc);
      return nullptr;
    }
    throw TransportError("csp: cannot connect to " + a.text + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!csp::detail::wait_fd(fd, EPOLLOUT, deadline, "connect")) {
        ::close(fd);
        why = "connection timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    tune_tcp(fd);
    return std::make_unique<FdStream>(fd, fd, a.text);
  }
  return nullptr;
}

std::unique_ptr<ByteStream> dial_unix(const Address& a, std::string& why) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (a.path.size() >= sizeof addr.sun_path)
    throw TransportError("csp: cannot connect to " + a.text + ": socket path too long");
  std::memcpy(addr.sun_path, a.path.c_str(), a.path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_system_error("csp: cannot connect to " + a.text + ": socket");
  widen_unix_send_buffer(fd);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
    return std::make_unique<FdStream>(fd, fd, a.text);
  why = std::strerror(errno);
  ::close(fd);
  return nullptr;
}

std::unique_ptr<ByteStream> dial_fifo(const Address& a, std::string& why) {
  static std::atomic<unsigned> counter{0};
  const std::string base = a.path + "." + std::to_string(::getpid()) + "." + std::to_string(++counter);
  if (base.size() > kFifoRecord - 12 - 4) throw TransportError("csp: cannot connect to " + a.text + ": path too long");
  const std::string c2s = base + ".c2s", s2c = base + ".s2c";
  auto cleanup = [&](int f1, int f2) {
    if (f1 >= 0) ::close(f1);
    if (f2 >= 0) ::close(f2);
    ::unlink(c2s.c_str());
    ::unlink(s2c.c_str());
  };
  // The rendezvous FIFO must have a reader (the host) before we make ours.
  int rv = ::open(a.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (rv < 0) {
    why = std::strerror(errno);
    return nullptr;
  }
  if (::mkfifo(c2s.c_str(), 0600) != 0 || ::mkfifo(s2c.c_str(), 0600) != 0) {
    int e = errno;
    ::close(rv);
    cleanup(-1, -1);
    errno = e;
    throw_system_error("csp: cannot connect to " + a.text + ": mkfifo " + base);
  }
  int in = ::open(s2c.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  // Read-write, so the host's open for reading never waits; we stay its only
  // writer, so it sees end of file when we go.
  int out = ::open(c2s.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (in < 0 || out < 0) {
    int e = errno;
    ::close(rv);
    cleanup(in, out);
    errno = e;
    throw_system_error("csp: cannot connect to " + a.text + ": open " + base);
  }
  char record[kFifoRecord] = {};
  std::memcpy(record, kFifoMagic, sizeof kFifoMagic);
  const auto len = static_cast<std::uint32_t>(base.size());
  std::memcpy(record + 8, &len, 4);
  std::memcpy(record + 12, base.data(), base.size());
  ssize_t w = ::write(rv, record, sizeof record);
  int e = errno;
  ::close(rv);
  if (w != static_cast<ssize_t>(sizeof record)) {
    cleanup(in, out);
    why = w < 0 ? std::strerror(e) : "short write of the connection request";
    return nullptr;
  }
  auto stream = std::make_unique<FdStream>(in, out, a.text);
  stream->wait_before_first_read();
  stream->unlink_on_close(c2s);
  stream->unlink_on_close(s2c);
  return stream;
}

/// One attempt. Null (with `why`) when retrying may help.
std::unique_ptr<ByteStream> try_dial(const Address& a, Deadline deadline, std::string& why) {
  switch (a.scheme) {
    case Address::Scheme::tcp: return dial_tcp(a, deadline, why);
    case Address::Scheme::unix_socket: return dial_unix(a, why);
    case Address::Scheme::pipe: return dial_fifo(a, why);
    case Address::Scheme::shm:
#if defined(CSP_TRANSPORT_SHM)
      return shm_connect(a.path, deadline);
#else
      (void)deadline;
      throw TransportError("csp: cannot connect to " + a.text +
                           ": shm:// addresses need the shm transport, which this build lacks");
#endif
  }
  return nullptr;
}

// ---- the hosting registry ---------------------------------------------------------------

struct Endpoint {
  std::string key;                      // endpoint as bound
  std::shared_ptr<Listener> listener;
  std::mutex mutex;                     // guards channels
  std::map<std::string, std::shared_ptr<HostedChannelBase>> channels;  // by channel name
};

struct Registry {
  std::mutex mutex;                                            // guards both maps
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints;  // by endpoint key
  std::map<const void*, std::string> addresses;                // ChannelCore* -> bound address
  pid_t owner = ::getpid();
};

std::atomic<Registry*> g_registry{nullptr};
std::mutex g_registry_create;

Registry& registry() {
  if (Registry* r = g_registry.load(std::memory_order_acquire)) return *r;
  std::lock_guard lock(g_registry_create);
  if (Registry* r = g_registry.load(std::memory_order_relaxed)) return *r;
  auto* r = new Registry;  // never destroyed: acceptors may outlive static destruction
  g_registry.store(r, std::memory_order_release);
  static bool hooked = (std::atexit([] {
                          // Remove socket files and FIFOs; the acceptors just stop.
                          Registry* reg = g_registry.load();
                          if (!reg || reg->owner != ::getpid()) return;
                          std::lock_guard l(reg->mutex);
                          for (auto& [key, ep] : reg->endpoints) ep->listener->close();
                        }),
                        true);
  (void)hooked;
  return *r;
}

void handle_connection(const std::shared_ptr<Endpoint>& ep, std::unique_ptr<ByteStream> stream) {
  const std::string peer = stream->describe();
  FrameReader reader(max_frame_payload(false));
  csp::detail::Frame frame;
  std::shared_ptr<HostedChannelBase> hosted;
  csp::detail::Hello hello;
  try {
    auto r = reader.next(*stream, csp::detail::Clock::now() + std::chrono::seconds(10), frame);
    if (r == FrameReader::Result::eof) return;  // connected and went: nothing to say
    if (r == FrameReader::Result::timeout) throw TransportError("csp: no handshake within 10 s");
    if (frame.header.kind != FrameKind::hello)
      throw TransportError("csp: " + std::string(csp::detail::frame_kind_name(frame.header.kind)) +
                           " frame before the handshake");
    hello = csp::detail::decode_hello(frame.payload);
    std::string names;
    {
      std::lock_guard lock(ep->mutex);
      if (auto it = ep->channels.find(hello.channel_name); it != ep->channels.end()) hosted = it->second;
      for (auto& [name, ch] : ep->channels) names += (names.empty() ? "'" : ", '") + name + "'";
    }
    if (!hosted)
      throw TransportError("csp: no channel '" + hello.channel_name + "' is hosted at " + ep->key +
                           (names.empty() ? std::string() : " (hosted: " + names + ")"));
  } catch (const TransportError& e) {
    try {
      ByteWriter out;
      OutFrame f{out};
      build_text_frame(f, FrameKind::hello_nak, frame.header.sequence, 0, e.what());
      stream->write_all(out.data(), out.size());
    } catch (...) {
    }
    stream->close();
    report_transport_error(TransportError("csp: dropped connection from " + peer + ": " + e.what()));
    return;
  }
  hosted->serve(std::move(stream), hello, frame.header.flags, frame.header.sequence, std::move(reader), peer);
}

void accept_loop(const std::shared_ptr<Endpoint>& ep) {
  for (;;) {
    std::unique_ptr<ByteStream> stream;
    try {
      stream = ep->listener->accept(csp::detail::forever);
    } catch (const TransportError& e) {
      report_transport_error(e);
      return;
    } catch (const std::exception& e) {
      report_transport_error(TransportError(e.what()));
      return;
    }
    if (!stream) return;  // closed
    ByteStream* raw = stream.release();
    start_coroutine("connection to " + ep->key,
                    [ep, raw] { handle_connection(ep, std::unique_ptr<ByteStream>(raw)); }, nullptr);
  }
}

}  // namespace

void reset_hosting_after_fork() noexcept {
  // The parent's endpoints are not this process's (their fds are closed by
  // the fd registry): forget them, leaked, as their destructors must not run.
  if (g_registry.load()) g_registry.store(new Registry);
  new (&g_registry_create) std::mutex;
  new (&g_handler_mutex) std::mutex;
}

std::string host_channel(const Address& a, std::shared_ptr<HostedChannelBase> hosted) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::shared_ptr<Endpoint> ep;
  const bool any_port = a.scheme == Address::Scheme::tcp && a.port == 0;
  if (!any_port) {
    if (auto it = r.endpoints.find(a.endpoint()); it != r.endpoints.end()) ep = it->second;
  }
  const bool fresh = !ep;
  if (fresh) {
    ep = std::make_shared<Endpoint>();
    ep->listener = make_listener(a);
    ep->key = ep->listener->describe();
  }
  const bool named = a.scheme == Address::Scheme::tcp || a.scheme == Address::Scheme::unix_socket;
  const std::string bound = named ? ep->key + "/" + a.name : ep->key;
  {
    std::lock_guard ep_lock(ep->mutex);
    if (ep->channels.count(a.name))
      throw TransportError("csp: cannot host " + a.text + ": a channel is already hosted at " + bound);
    hosted->address = bound;
    ep->channels[a.name] = hosted;
  }
  r.addresses[hosted->channel] = bound;
  if (fresh) {
    r.endpoints[ep->key] = ep;
    start_coroutine("acceptor of " + ep->key, [ep] { accept_loop(ep); }, nullptr);
  }
  return bound;
}

std::string hosted_address_of(const void* channel) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.addresses.find(channel);
  return it == r.addresses.end() ? std::string() : it->second;
}

std::unique_ptr<ByteStream> dial(const Address& a, Deadline deadline, std::chrono::milliseconds timeout) {
  std::string why = "nobody serves it";
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    if (auto stream = try_dial(a, deadline, why)) return stream;
    const auto now = csp::detail::Clock::now();
    if (now >= deadline)
      throw TransportError("csp: cannot connect to " + a.text + ": " + why + " (retried for " +
                           std::to_string(timeout.count()) + " ms)");
    csp::sleep_until(std::min(deadline, now + backoff));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace csp::transport_detail

namespace csp {

void set_transport_error_handler(TransportErrorHandler h) {
  std::lock_guard lock(transport_detail::g_handler_mutex);
  transport_detail::handler() = std::move(h);
}

bool unhost(std::string_view address) {
  using namespace transport_detail;
  const Address a = parse_address(address);
  Registry& r = registry();
  std::shared_ptr<Listener> to_close;
  std::shared_ptr<HostedChannelBase> released;
  {
    std::lock_guard lock(r.mutex);
    auto it = r.endpoints.find(a.endpoint());
    if (it == r.endpoints.end()) return false;
    auto ep = it->second;
    std::lock_guard ep_lock(ep->mutex);
    auto ch = ep->channels.find(a.name);
    if (ch == ep->channels.end()) return false;
    r.addresses.erase(ch->second->channel);
    released = ch->second;
    ep->channels.erase(ch);
    if (ep->channels.empty()) {
      to_close = ep->listener;
      r.endpoints.erase(it);
    }
  }
  if (to_close) to_close->close();
  released->release();
  return true;
}

}  // namespace csp
