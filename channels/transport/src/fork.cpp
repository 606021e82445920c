// fork.cpp: see csp/transport/fork.hpp.
#include <csp/transport/fork.hpp>

#include <cxxabi.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <typeinfo>

#include <csp/error.hpp>
#include <csp/runtime.hpp>
#include <csp/transport/stream.hpp>

#include "fork_support.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace csp::transport_detail {
namespace {
thread_local pid_t t_last_forked = -1;

int pidfd_open(pid_t pid) noexcept {
#if defined(SYS_pidfd_open)
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}
}  // namespace

pid_t last_forked_pid() noexcept { return t_last_forked; }

void keep_in_child(std::shared_ptr<const void> object) {
  static auto* kept = new std::vector<std::shared_ptr<const void>>;  // never destroyed, by design
  kept->push_back(std::move(object));
}

pid_t fork_child(ForkedChild& child) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_system_error("csp: os_process status pipe");
  track_fd(fds[0]);
  track_fd(fds[1]);
  std::fflush(nullptr);  // else the child would print the parent's buffered output again
  const pid_t parent = ::getpid();
  csp::detail::quiesce_for_fork();
  lock_fds_for_fork();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    unlock_fds_after_fork();
    csp::detail::resume_after_fork();
    close_tracked(fds[0]);
    close_tracked(fds[1]);
    errno = e;
    throw_system_error("csp: os_process fork");
  }
  if (pid == 0) {
    csp::detail::reset_after_fork();
    reset_hosting_after_fork();
    unlock_fds_after_fork();
    // The child dies with the parent's worker thread, which lives as long as
    // the runtime that joins this os_process.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    close_tracked(fds[0]);
    child.pid = 0;
    child.status_fd = fds[1];
    child.pidfd = -1;
    return 0;
  }
  t_last_forked = pid;
  unlock_fds_after_fork();
  csp::detail::resume_after_fork();
  close_tracked(fds[1]);
  int flags = ::fcntl(fds[0], F_GETFL);
  ::fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
  child.pid = pid;
  child.status_fd = fds[0];
  child.pidfd = pidfd_open(pid);
  if (child.pidfd >= 0) {
    ::fcntl(child.pidfd, F_SETFD, FD_CLOEXEC);
    track_fd(child.pidfd);
  }
  return pid;
}

void child_keep_only(std::vector<int> keep, const ForkedChild& child) noexcept {
  keep.push_back(child.status_fd);
  lock_fds_for_fork();
  close_tracked_except_locked(keep);
  unlock_fds_after_fork();
}

void child_exit(const ForkedChild& child, const ByteWriter& record, int code) noexcept {
  const auto* p = reinterpret_cast<const char*>(record.data());
  std::size_t left = record.size();
  while (left > 0) {
    ssize_t w = ::write(child.status_fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  std::fflush(nullptr);
  ::_exit(code);
}

ChildStatus wait_child(ForkedChild& child) {
  ChildStatus status;
  // The record, to end of file: the pipe closes when the child exits, even
  // when it is killed (the kernel closes its fds).
  char buffer[4096];
  for (;;) {
    ssize_t r = ::read(child.status_fd, buffer, sizeof buffer);
    if (r > 0) {
      const auto* b = reinterpret_cast<const std::byte*>(buffer);
      status.record.insert(status.record.end(), b, b + r);
      continue;
    }
    if (r == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      csp::detail::wait_fd(child.status_fd, EPOLLIN, csp::detail::forever, "wait for os_process");
      continue;
    }
    break;
  }
  close_tracked(child.status_fd);
  child.status_fd = -1;
  siginfo_t info{};
  int rc;
  if (child.pidfd >= 0) {
    // Readable once the child has exited; then the wait cannot block.
    csp::detail::wait_fd(child.pidfd, EPOLLIN, csp::detail::forever, "wait for os_process");
    do {
      rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd), &info, WEXITED);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno == EINVAL) {  // no P_PIDFD in this kernel
      do {
        rc = ::waitid(P_PID, static_cast<id_t>(child.pid), &info, WEXITED);
      } while (rc < 0 && errno == EINTR);
    }
    close_tracked(child.pidfd);
    child.pidfd = -1;
  } else {
    // Its status pipe is closed, so the child is exiting: a short wait.
    do {
      rc = ::waitid(P_PID, static_cast<id_t>(child.pid), &info, WEXITED);
    } while (rc < 0 && errno == EINTR);
  }
  if (rc < 0) throw_system_error("csp: waiting for os_process pid " + std::to_string(child.pid));
  if (info.si_code == CLD_EXITED) {
    status.exited = true;
    status.code = info.si_status;
  } else {
    status.signal = info.si_status;
  }
  return status;
}

std::string describe_exit(const ChildStatus& status) {
  if (status.exited) return "exited with status " + std::to_string(status.code);
  const char* name = ::strsignal(status.signal);
  return "was killed by signal " + std::to_string(status.signal) + " (" + (name ? name : "?") + ")";
}

std::string current_exception_type() {
  std::type_info* type = abi::__cxa_current_exception_type();
  if (!type) return "unknown exception";
  int rc = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type->name(), nullptr, nullptr, &rc), std::free);
  return rc == 0 && name ? std::string(name.get()) : std::string(type->name());
}

}  // namespace csp::transport_detail
