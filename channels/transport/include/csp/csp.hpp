// csp/csp.hpp: everything csp offers, in one include.
#pragma once

#include <csp/error.hpp>
#include <csp/parallel.hpp>
#include <csp/process.hpp>
#include <csp/runtime.hpp>
#if __has_include(<csp/channel.hpp>)
#include <csp/channel.hpp>
#endif
#if __has_include(<csp/alternation.hpp>)
#include <csp/alternation.hpp>
#endif
#if __has_include(<csp/sync.hpp>)
#include <csp/sync.hpp>
#endif
#if __has_include(<csp/os_process.hpp>)
#include <csp/os_process.hpp>
#endif
