// trace_hooks.hpp: what wait() needs of the tracer (csp/trace.hpp), kept out
// of the public headers.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include <csp/detail/wait.hpp>

namespace csp::detail {

/// True while blocking operations are traced.
extern std::atomic<bool> g_tracing;
inline bool trace_active() noexcept { return g_tracing.load(std::memory_order_relaxed); }

/// The trace's clock: steady_clock in ns (one clock for every OS process
/// of a host, so children's events line up with their parent's).
std::int64_t trace_now_ns() noexcept;

class Parker;

/// Records one blocking operation `what` on `object` by `parker`, from
/// `begin_ns` to now, ended by `token` (a Waiter token).
void trace_blocking(const char* what, std::string_view object, const Parker* parker, std::int64_t begin_ns,
                    std::uintptr_t token) noexcept;

}  // namespace csp::detail
