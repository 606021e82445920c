// csp/transport/fork.hpp: the untyped OS work behind csp::os_process:
// forking safely from a running runtime, the child's status record, and
// waiting for the child without blocking a worker. Used by
// csp/os_process.hpp; not for users.
//
// Status record (child -> parent, on a pipe of its own, read to end of
// file): u8 outcome, then for `exception` two strings (type, message), for
// `returned` the encoded result (nothing for void).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <csp/codec.hpp>

namespace csp::transport_detail {

enum class ChildOutcome : std::uint8_t { returned = 0, poisoned = 1, retired = 2, exception = 3 };

/// One forked child, as the parent sees it.
struct ForkedChild {
  pid_t pid = -1;
  int status_fd = -1;  // parent: read end of the status pipe; child: write end
  int pidfd = -1;      // parent: pidfd of the child (-1 where unsupported)
};

/// Forks. Before: flushes stdio, holds the fd registry so the child sees it
/// whole. Returns 0 in the child (the runtime reset, SIGKILL on the parent's
/// death armed, `child.status_fd` the write end) and the pid in the parent.
/// Throws SystemError when fork fails.
pid_t fork_child(ForkedChild& child);

/// In the child, once it has taken its link ends: closes every tracked fd
/// except `keep` (and the status pipe).
void child_keep_only(std::vector<int> keep, const ForkedChild& child) noexcept;

/// In the child: writes the status record and exits with `code`. Flushes
/// stdio; skips atexit handlers and static destructors (they belong to the
/// parent's program state).
[[noreturn]] void child_exit(const ForkedChild& child, const ByteWriter& record, int code) noexcept;

/// What the parent learns once the child is gone.
struct ChildStatus {
  std::vector<std::byte> record;  // the status record (empty if none was written)
  bool exited = false;            // exited normally (else killed by `signal`)
  int code = 0;                   // exit code
  int signal = 0;                 // terminating signal
};

/// Parent: reads the status record to end of file and reaps the child,
/// parking the caller (never its worker). Closes the child's fds.
ChildStatus wait_child(ForkedChild& child);

/// The pid of the last child forked by this thread (for link descriptions).
pid_t last_forked_pid() noexcept;

/// "killed by signal 9 (Killed)" / "exited with status 3".
std::string describe_exit(const ChildStatus& status);

/// Demangled type of the exception being handled (inside a catch).
std::string current_exception_type();

}  // namespace csp::transport_detail
