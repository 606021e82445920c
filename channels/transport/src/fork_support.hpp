// fork_support.hpp: private hooks between the fd registry (fd_stream.cpp)
// and fork_child() (fork.cpp).
#pragma once

#include <sys/types.h>

#include <vector>

namespace csp::transport_detail {

/// Holds the registry's lock across fork() (both sides unlock after).
void lock_fds_for_fork() noexcept;
void unlock_fds_after_fork() noexcept;
/// Closes and forgets every tracked fd not in `keep` (lock held by caller).
void close_tracked_except_locked(const std::vector<int>& keep) noexcept;

pid_t last_forked_pid() noexcept;

/// Re-initialises the hosting registry's lock in a child (address.cpp).
void reset_hosting_after_fork() noexcept;

}  // namespace csp::transport_detail
