// trace_hooks.hpp: what wait() needs of the tracer beyond csp/trace.hpp,
// kept out of the public headers.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include <csp/detail/wait.hpp>
#include <csp/trace.hpp>

namespace csp::detail {

class Parker;

/// Records one blocking operation `what` on `object` by `parker`, from
/// `begin_ns` to now, ended by `token` (a Waiter token).
void trace_blocking(const char* what, std::string_view object, const Parker* parker, std::int64_t begin_ns,
                    std::uintptr_t token) noexcept;

}  // namespace csp::detail
