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
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <csp/detail/wait.hpp>

namespace csp::transport_detail {

using csp::detail::Deadline;

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  virtual void write_all(const void* data, std::size_t n) = 0;
  virtual std::optional<std::size_t> read_some(void* data, std::size_t n, Deadline deadline) = 0;
  virtual void close() noexcept = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
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

}  // namespace csp::transport_detail
