// csp/csp.hpp: everything csp offers, in one include. It lives in the top
// layer (transport) because it includes every layer below.
#pragma once

#include <csp/error.hpp>
#include <csp/parallel.hpp>
#include <csp/process.hpp>
#include <csp/runtime.hpp>
#include <csp/sync.hpp>
#include <csp/trace.hpp>

#include <csp/alternation.hpp>
#include <csp/buffer.hpp>
#include <csp/channel.hpp>
#include <csp/codec.hpp>

#include <csp/os_process.hpp>
#include <csp/transport/address.hpp>
