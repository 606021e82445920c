// csp/transport/stream.hpp: the byte stream every cross-process transport
// provides (shm ring pair, pipe pair, unix or TCP socket). The channel
// protocol (frames of csp/detail/frame.hpp) runs on top of it, the same for
// every transport.
//
// Contract of a ByteStream (each transport passes tests/transport/stream_test.cpp):
// - write_all(p, n): all n bytes are accepted in order, or it throws
//   csp::TransportError naming the stream (peer closed or died). Blocking
//   parks the calling process, never its worker thread (coroutines wait in
//   the worker's epoll reactor; threads in poll/futex).
// - write_all_v(parts, n): the same for several buffers in order, as one
//   write where the transport can (writev); the default writes each part.
// - read_some(p, n, deadline): at least 1 and at most n bytes, in order;
//   0 at end of stream (peer closed); std::nullopt when the deadline passed
//   first. Throws TransportError on a broken stream.
// - One reader and one writer may use a stream at the same time (from
//   different processes or threads); callers serialise readers among
//   themselves and writers among themselves.
// - close(): the peer's read_some then returns 0 once it has read what was
//   sent; idempotent; the destructor closes.
// - describe(): the transport and address, for messages ("pipe", "shm:/csp-1a2b",
//   "tcp://127.0.0.1:7000").
// - fds(): every file descriptor the stream uses, so an os_process child
//   keeps exactly those open (see track_fd below).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <csp/detail/wait.hpp>

namespace csp::transport_detail {

using csp::detail::Deadline;

/// One buffer of a gathered write.
struct ConstBuffer {
  const void* data;
  std::size_t size;
};

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  virtual void write_all(const void* data, std::size_t n) = 0;
  virtual void write_all_v(const ConstBuffer* parts, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) write_all(parts[i].data, parts[i].size);
  }
  virtual std::optional<std::size_t> read_some(void* data, std::size_t n, Deadline deadline) = 0;
  virtual void close() noexcept = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
  [[nodiscard]] virtual std::vector<int> fds() const { return {}; }
};

/// A connection made before fork(): each side takes its end after the fork
/// (the parent calls parent_end(), the child child_end(); each closes what
/// belongs to the other). Implemented by every cross-process transport.
class ForkLink {
 public:
  virtual ~ForkLink() = default;
  virtual std::unique_ptr<ByteStream> parent_end() = 0;
  virtual std::unique_ptr<ByteStream> child_end() = 0;
};

/// The accepting side of an address (tcp://, unix://, pipe://, shm://).
/// - accept(deadline): the next connection, parked until one comes; null
///   when the deadline passed or close() was called. Throws TransportError
///   only when the listener itself is broken.
/// - close(): stops listening (wakes a blocked accept, which returns null),
///   removes what the address put in the file system; idempotent.
class Listener {
 public:
  virtual ~Listener() = default;
  virtual std::unique_ptr<ByteStream> accept(Deadline deadline) = 0;
  virtual void close() noexcept = 0;
  /// The address actually bound (a tcp port 0 becomes the real port).
  [[nodiscard]] virtual std::string describe() const = 0;
  [[nodiscard]] virtual std::vector<int> fds() const { return {}; }
};

// ---- file descriptors across fork ----------------------------------------------
// os_process forks while other workers may be opening connections. Each
// transport tracks the fds it opens; right after fork the child closes every
// tracked fd except those of its own links, so a peer's death shows as end
// of stream (which needs every copy of the other end closed) and no child
// holds another child's connection open. Defined in src/fd_registry.cpp.

/// Records `fd` as a transport fd (thread-safe).
void track_fd(int fd) noexcept;
/// Forgets `fd` (call before closing it).
void untrack_fd(int fd) noexcept;
/// Closes `fd` after untracking it; ignores -1.
void close_tracked(int fd) noexcept;

// ---- the shm transport's entry points --------------------------------------------
// Implemented in the shm sources (channels/transport/src/shm*.cpp), which
// shm.cmake adds to csp_transport together with the compile definition
// CSP_HAVE_SHM=1 (target_compile_definitions(csp_transport PRIVATE CSP_HAVE_SHM=1)).
// Without it, shm falls back to a unix socketpair (os_process) and shm://
// addresses are refused.

/// A fresh link for an os_process child.
std::unique_ptr<ForkLink> make_shm_fork_link();
/// Serves shm://name. Throws TransportError if the name is taken.
std::unique_ptr<Listener> shm_listen(std::string_view name);
/// Connects to shm://name: null while nobody serves the name yet (connect
/// retries until its deadline), a stream once connected; TransportError for
/// failures that retrying cannot fix.
std::unique_ptr<ByteStream> shm_connect(std::string_view name, Deadline deadline);

}  // namespace csp::transport_detail
