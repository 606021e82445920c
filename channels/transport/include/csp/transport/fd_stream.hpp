// csp/transport/fd_stream.hpp: the ByteStream of the pipe and socket
// transports, and the links os_process makes for its children.
//
// An FdStream reads one fd and writes another (two pipes), or reads a socket
// and writes a dup() of it: the reader and the writer may then wait in the
// same epoll reactor at once (epoll registers an fd number once). Both fds
// are non-blocking. A read or write that would block parks the caller with
// csp::detail::wait_fd, so a coroutine never blocks its worker; on a thread
// (an os_process child's body, say) it first polls its fd for an adaptive
// bound, yielding the CPU between polls. The spin catches the quick replies
// of the channel protocol (an ack, the next request) without the wake-up of
// a sleeping process, which costs 10-65 us on a small idle VM; it backs off
// when waits are long and stops while the CPUs are contended (see
// "spinning" in fd_stream.cpp). CSP_FD_SPIN_US sets the bound (default 50;
// 0 never spins).
//
// SIGPIPE is ignored process-wide (if it had its default action) once the
// first stream exists: a write to a dead peer is then a TransportError, not
// a killed program.
//
// Link kinds (what CSP_TRANSPORT names):
//   shm    the shm transport's ring pair (a unix socketpair until it is built in)
//   pipe   two pipe(2)s, sized to 1 MiB where the system allows
//   unix   socketpair(AF_UNIX, SOCK_STREAM) ("socket" is a synonym), send
//          buffers widened (kUnixSendBuffer)
//   tcp    a TCP connection over 127.0.0.1 with TCP_NODELAY
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <csp/channel_impl.hpp>
#include <csp/detail/spin_budget.hpp>
#include <csp/transport/stream.hpp>

namespace csp::transport_detail {

enum class LinkKind : std::uint8_t { shm, pipe, unix_socket, tcp };

/// "shm", "pipe", "unix", "tcp".
const char* to_string(LinkKind kind) noexcept;
/// Parses a CSP_TRANSPORT value: shm, pipe, socket or unix, tcp.
std::optional<LinkKind> parse_link_kind(std::string_view text) noexcept;

/// The cross-process transport of channels that do not force one: the
/// override of set_default_link_kind(), else CSP_TRANSPORT (read at each
/// call), else shm. A bad CSP_TRANSPORT value throws csp::TransportError.
LinkKind default_link_kind();
/// Overrides CSP_TRANSPORT for this process (tests, benchmarks); nullopt
/// goes back to the environment.
void set_default_link_kind(std::optional<LinkKind> kind) noexcept;
/// The link for a channel whose preferred transport is `preferred`.
LinkKind link_kind_for(csp::transport preferred);

/// A new link of `kind` for one os_process argument.
std::unique_ptr<ForkLink> make_fork_link(LinkKind kind);

/// The send buffer csp asks for on a unix stream socket (the kernel doubles
/// it for its bookkeeping). With the default (208 KiB) a sender waiting for
/// room is told the socket is writable only once less than a quarter of it
/// is queued, so messages of 64 KiB and up went one at a time, a wake-up of
/// the reader each (csp-bench, unix: pingpong 1 MiB 146 -> 113 us per hop,
/// stream 64 KiB 0.4-5.9 -> 4.6-5.9 GB/s).
inline constexpr int kUnixSendBuffer = 2 << 20;
/// Asks for kUnixSendBuffer on `fd` (SO_SNDBUFFORCE where privileged, else
/// SO_SNDBUF, which net.core.wmem_max caps); failure is harmless.
void widen_unix_send_buffer(int fd) noexcept;

/// Ignores SIGPIPE if it still has its default action (idempotent).
void ignore_sigpipe() noexcept;

class FdStream final : public ByteStream {
 public:
  /// Takes ownership of both fds (equal for a socket: the write side is then
  /// dup()ed), makes them non-blocking and tracks them.
  FdStream(int read_fd, int write_fd, std::string description);
  ~FdStream() override;
  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  void write_all(const void* data, std::size_t n) override;
  void write_all_v(const ConstBuffer* parts, std::size_t count) override;
  std::optional<std::size_t> read_some(void* data, std::size_t n, Deadline deadline) override;
  void close() noexcept override;
  [[nodiscard]] std::string describe() const override { return description_; }
  [[nodiscard]] std::vector<int> fds() const override;

  /// The first read waits for readiness before read(2): a FIFO read before
  /// its writer ever opened it would report end of file.
  void wait_before_first_read() noexcept { wait_first_read_ = true; }
  /// Removes `path` when the stream closes (a client's FIFOs, in case the
  /// host never took them).
  void unlink_on_close(std::string path) { unlink_on_close_.push_back(std::move(path)); }
  /// Overrides CSP_FD_SPIN_US for this stream: how long a read or write
  /// by a thread that would block polls before it parks (zero: parks at
  /// once). Call before the stream is in use.
  void set_max_spin(std::chrono::nanoseconds bound) noexcept;

 private:
  // Spin-then-park bookkeeping of one waiting role (reader or writer).
  using SpinBudget = csp::detail::SpinBudget;  // csp/detail/spin_budget.hpp; max_ns: CSP_FD_SPIN_US or set_max_spin()
  class Wait;

  [[noreturn]] void fail(const char* op, int error) const;
  /// Writes `parts` in order with writev(2), waiting while the fd is full;
  /// `refused`: the caller's own write(2) just found it full (wait first).
  void write_gathered(const ConstBuffer* parts, std::size_t count, bool refused);

  int read_fd_ = -1;          // read end; -1 once closed
  int write_fd_ = -1;         // write end (a dup for sockets); -1 once closed
  pid_t owner_;                             // the process that made it: only it closes the fds
  bool wait_first_read_ = false;            // see wait_before_first_read()
  bool drained_ = false;                    // the last read(2) emptied the fd
  SpinBudget read_spin_;                    // used by the (one) reader only
  SpinBudget write_spin_;                   // used by the (one) writer only
  std::string description_;                 // "pipe to pid 123", "tcp://127.0.0.1:7000", ...
  std::vector<std::string> unlink_on_close_;  // paths removed by close()
};

}  // namespace csp::transport_detail
