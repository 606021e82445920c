// csp/trace.hpp: observability (DESIGN §6). A trace of every blocking
// operation in the Chrome/Perfetto trace format, and the process network
// (processes and the channels between them) as Graphviz DOT.
//
//   CSP_TRACE=run.json ./program      # or csp::trace_start("run.json")
//
// writes, when the program's runtime shuts down (csp::shutdown(), or at
// exit):
// - run.json: one complete event ("ph": "X") per operation that blocked: a
//   read, write or select that had to wait, a join, a sleep, a lock or
//   semaphore wait, ... Its name is the operation and the channel
//   ("read jobs"), its track (tid) is the csp process that blocked (named
//   by a thread_name record), its pid the OS process; args give the
//   process, the object waited on and how the wait ended ("ok", "timeout",
//   "poisoned", "retired", "deadlock", or "guard N" for a select). Open it
//   in https://ui.perfetto.dev or chrome://tracing. An operation that did
//   not block (a hand-off to a waiting peer, a buffered write) leaves no
//   event: the trace shows where time was spent waiting.
// - run.dot: the process network: each process that started while tracing
//   (a box) and each channel among its arguments (an ellipse), with an edge
//   from every writing process to the channel and from the channel to every
//   reading process (an os_process is one box: the processes inside the
//   child are not drawn). `dot -Tsvg run.dot > run.svg` draws it.
//
// os_process children inherit tracing: each child adds its events to the
// parent's file (through "run.json.parts", merged and removed by the OS
// process that started tracing), so one file shows the whole program, one
// pid per OS process. Programs started separately (a socket client and
// server) each need their own path. A child killed by a signal loses its
// events. At most kMaxTraceEvents events are kept per OS process; a
// "dropped" count in the file says when more happened.
//
// Tracing costs one relaxed load per blocking wait when it is off.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace csp {

/// Events kept per OS process before further ones are only counted.
inline constexpr std::size_t kMaxTraceEvents = std::size_t(1) << 21;

/// Starts tracing to `path` (Chrome trace JSON) and records the process
/// network (written beside it as DOT, see dot_path_for). Throws csp::Error
/// naming the path when it cannot be written. Restarting with another path
/// flushes the current trace first.
void trace_start(const std::string& path);

/// Writes the trace and the DOT file now and stops tracing. A no-op when
/// not tracing.
void trace_stop();

/// Writes the trace and the DOT file now; tracing goes on (csp::shutdown()
/// does this).
void trace_flush();

/// True while blocking operations are traced.
[[nodiscard]] bool tracing() noexcept;

/// The DOT file written beside a trace: `path` with its ".json" replaced by
/// ".dot" (".dot" appended when it has no ".json").
[[nodiscard]] std::string dot_path_for(const std::string& trace_path);

/// Writes the process network recorded since tracing started, as DOT.
void write_network_dot(std::ostream& out);

namespace detail {

/// One channel end among a process's arguments, for the network; channel
/// ends report themselves by csp_describe(end, std::vector<EndInfo>&),
/// found by argument-dependent lookup (csp/channel.hpp).
struct EndInfo {
  const void* channel;  ///< identifies the channel (ends of one channel share it)
  std::string name;     ///< the channel's name, possibly empty
  bool writer;          ///< the writing side, else the reading side
};

/// True while blocking operations are traced.
extern std::atomic<bool> g_tracing;
inline bool trace_active() noexcept { return g_tracing.load(std::memory_order_relaxed); }

/// The trace's clock: steady_clock in ns (one clock for every OS process
/// of a host, so children's events line up with their parent's).
std::int64_t trace_now_ns() noexcept;

/// Records a wait of the calling thread outside csp::detail::wait() (a
/// thread blocked in poll(2) on a transport's fd), from `begin_ns` to now;
/// `ready`: it ended by the fd, else by its deadline.
void trace_poll_wait(const char* what, std::int64_t begin_ns, bool ready) noexcept;

/// True while the process network is recorded (tracing is on).
[[nodiscard]] bool network_recording() noexcept;

/// Records a started process ("coroutine", "thread" or "os_process") and
/// the channel ends among its arguments.
void record_process(const std::string& name, const char* kind, std::vector<EndInfo> ends);

}  // namespace detail
}  // namespace csp
