// trace.cpp: CSP_TRACE, the Chrome trace of blocking operations and the
// process network as DOT (csp/trace.hpp).
//
// Recording: each thread appends to its own Buffer (a spin lock that only a
// flush contends for); the registry of buffers, the recorded processes and
// the file names sit under State::mutex. A forked child (os_process) starts
// with no buffers of its own: the parent's events stay the parent's.
//
// Files: the OS process that started tracing (the owner) writes the whole
// trace to `path` (through path.tmp and a rename, so a reader never sees
// half a file) at every flush, with every event it kept since the start
// plus what its descendants appended to `path.parts`. A descendant's flush
// appends its new events to `path.parts` in one write(2) (O_APPEND: whole
// blocks from several children do not interleave) and forgets them.
#include <csp/trace.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include <csp/detail/spin_lock.hpp>
#include <csp/error.hpp>

#include "scheduler.hpp"
#include "trace_hooks.hpp"

namespace csp::detail {

std::atomic<bool> g_tracing{false};

namespace {

struct Event {
  std::int64_t begin_ns;
  std::int64_t end_ns;
  const char* what;      // static string of the Waiter
  std::string object;    // channel name (copied: the channel may be gone at flush)
  std::string process;   // the blocked csp process
  std::uintptr_t token;  // how the wait ended
};

struct Buffer {
  SpinLock lock;
  std::vector<Event> events;  // guarded by lock
};

struct ProcessRecord {
  std::string name;
  const char* kind;
  std::vector<EndInfo> ends;
};

struct State {
  std::mutex mutex;                               // guards everything below
  std::string path;                               // the trace file; empty: never started
  pid_t owner = 0;                                // the OS process that started tracing
  std::vector<std::unique_ptr<Buffer>> buffers;   // one per thread that recorded
  std::string child_events;                       // merged from path.parts (owner only)
  std::vector<ProcessRecord> processes;           // the network, in start order
  bool exit_hook = false;                         // atexit(flush) registered
  std::atomic<std::size_t> recorded{0};           // events kept or dropped since the start
  std::atomic<std::size_t> dropped{0};            // events over kMaxTraceEvents
  std::atomic<std::uint64_t> generation{0};       // bumped when buffers are discarded
};

State& state() {
  static State* s = new State;  // never destroyed: threads may trace during exit
  return *s;
}

thread_local Buffer* t_buffer = nullptr;
thread_local std::uint64_t t_generation = 0;

Buffer& local_buffer() {
  State& s = state();
  const std::uint64_t gen = s.generation.load(std::memory_order_acquire);
  if (t_buffer == nullptr || t_generation != gen) {
    std::lock_guard lock(s.mutex);
    s.buffers.push_back(std::make_unique<Buffer>());
    t_buffer = s.buffers.back().get();
    t_generation = s.generation.load(std::memory_order_relaxed);
  }
  return *t_buffer;
}

// ------------------------------------------------------------------ output

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void append_us(std::string& out, std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ns / 1000),
                static_cast<long long>(ns % 1000));
  out += buf;
}

std::string result_of(std::string_view what, std::uintptr_t token) {
  switch (token) {
    case kWaiting: return "ok";  // not reached: a wait returns once selected
    case kTimedOut: return "timeout";
    case kDeadlock: return "deadlock";
    case kWoken: return "ok";
    case kPoisoned: return "poisoned";
    case kRetired: return "retired";
    default: break;
  }
  // A select reports its guard; other operations are completed by a
  // caller-defined token (a channel's hand-off).
  if (token >= kFirstGuard && what == "select") return "guard " + std::to_string(token - kFirstGuard);
  return "ok";
}

/// This OS process's events (and its metadata records), each preceded by
/// ",\n", so the owner can append them after its first record.
std::string render_events(std::vector<Event>& events, pid_t pid) {
  std::string out;
  out.reserve(events.size() * 160 + 256);
  const std::string spid = std::to_string(pid);
  out += ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + spid + ",\"tid\":0,\"args\":{\"name\":";
  append_json_string(out, "csp pid " + spid);
  out += "}}";
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.begin_ns < b.begin_ns; });
  std::map<std::string, int> tids;  // one track per csp process, numbered in order of first event
  for (const Event& e : events) {
    auto [it, fresh] = tids.emplace(e.process, int(tids.size()) + 1);
    if (fresh) {
      out += ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + spid + ",\"tid\":" + std::to_string(it->second) +
             ",\"args\":{\"name\":";
      append_json_string(out, e.process);
      out += "}}";
    }
    out += ",\n{\"name\":";
    append_json_string(out, e.object.empty() ? std::string(e.what) : std::string(e.what) + " " + e.object);
    out += ",\"cat\":\"csp\",\"ph\":\"X\",\"ts\":";
    append_us(out, e.begin_ns);
    out += ",\"dur\":";
    append_us(out, std::max<std::int64_t>(0, e.end_ns - e.begin_ns));
    out += ",\"pid\":" + spid + ",\"tid\":" + std::to_string(it->second) + ",\"args\":{\"process\":";
    append_json_string(out, e.process);
    out += ",\"operation\":";
    append_json_string(out, e.what);
    out += ",\"object\":";
    append_json_string(out, e.object);
    out += ",\"result\":";
    append_json_string(out, result_of(e.what, e.token));
    out += "}}";
  }
  return out;
}

/// Every event of every buffer; `take` empties the buffers. Under s.mutex.
std::vector<Event> collect(State& s, bool take) {
  std::vector<Event> all;
  for (auto& b : s.buffers) {
    std::lock_guard lock(b->lock);
    if (take) {
      std::move(b->events.begin(), b->events.end(), std::back_inserter(all));
      b->events.clear();
    } else {
      all.insert(all.end(), b->events.begin(), b->events.end());
    }
  }
  return all;
}

bool write_all(int fd, const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    left -= std::size_t(w);
  }
  return true;
}

/// Writes `data` to `path` through path.tmp and a rename. Reports failure
/// on stderr (a flush runs at shutdown and exit: nothing to throw to).
void replace_file(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && write_all(fd, data);
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  if (ok) ok = ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    std::fprintf(stderr, "csp: cannot write trace file '%s': %s\n", path.c_str(), std::strerror(errno));
    ::unlink(tmp.c_str());
  }
}

std::string read_and_remove(const std::string& path) {
  std::string data;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return data;
  char buf[65536];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    data.append(buf, std::size_t(r));
  }
  ::close(fd);
  ::unlink(path.c_str());
  return data;
}

std::string dot_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

void write_dot_locked(State& s, std::ostream& out) {
  // Processes of one name are one node (a process restarted in a loop);
  // channels are told apart by identity and name.
  std::map<std::string, std::pair<const char*, std::set<std::pair<std::size_t, bool>>>> procs;
  std::map<std::pair<const void*, std::string>, std::size_t> channels;
  std::vector<std::string> channel_labels;
  for (const ProcessRecord& p : s.processes) {
    auto& node = procs[p.name];
    node.first = p.kind;
    for (const EndInfo& e : p.ends) {
      auto [it, fresh] = channels.emplace(std::make_pair(e.channel, e.name), channel_labels.size());
      if (fresh) channel_labels.push_back(e.name.empty() ? "channel " + std::to_string(it->second) : e.name);
      node.second.emplace(it->second, e.writer);
    }
  }
  out << "digraph csp {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n";
  for (std::size_t i = 0; i < channel_labels.size(); ++i)
    out << "  c" << i << " [shape=ellipse, label=\"" << dot_escape(channel_labels[i]) << "\"];\n";
  std::size_t index = 0;
  for (const auto& [name, node] : procs) {
    out << "  p" << index << " [shape=box, label=\"" << dot_escape(name) << "\", tooltip=\"" << node.first
        << "\"];\n";
    for (const auto& [channel, writer] : node.second) {
      if (writer)
        out << "  p" << index << " -> c" << channel << ";\n";
      else
        out << "  c" << channel << " -> p" << index << ";\n";
    }
    ++index;
  }
  out << "}\n";
}

/// Flush under s.mutex (see the file comment).
void flush_locked(State& s) {
  if (s.path.empty()) return;
  const pid_t pid = ::getpid();
  const std::string parts = s.path + ".parts";
  if (pid != s.owner) {
    std::vector<Event> mine = collect(s, true);
    if (mine.empty()) return;
    const std::string block = render_events(mine, pid);
    const int fd = ::open(parts.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || !write_all(fd, block))
      std::fprintf(stderr, "csp: cannot append to trace file '%s': %s\n", parts.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return;
  }
  s.child_events += read_and_remove(parts);
  std::vector<Event> mine = collect(s, false);
  std::string doc = "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"tool\":\"csp\",\"dropped_events\":" +
                    std::to_string(s.dropped.load(std::memory_order_relaxed)) + "},\"traceEvents\":[\n";
  doc += "{\"name\":\"csp trace\",\"ph\":\"i\",\"s\":\"g\",\"ts\":0,\"pid\":" + std::to_string(pid) + ",\"tid\":0}";
  doc += render_events(mine, pid);
  doc += s.child_events;
  doc += "\n]}\n";
  replace_file(s.path, doc);
  std::ostringstream dot;
  write_dot_locked(s, dot);
  replace_file(dot_path_for(s.path), dot.str());
}

void flush_at_exit() { csp::trace_flush(); }

// fork: the child must not wait for a lock a vanished thread held, nor
// report its parent's events as its own.
void before_fork() { state().mutex.lock(); }
void after_fork_parent() { state().mutex.unlock(); }
void after_fork_child() {
  State& s = state();
  s.buffers.clear();  // other threads' buffers are gone with them; ours is the parent's
  s.processes.clear();
  s.child_events.clear();
  s.generation.fetch_add(1, std::memory_order_release);
  t_buffer = nullptr;
  s.mutex.unlock();
}

struct StartFromEnvironment {
  StartFromEnvironment() {
    ::pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    const char* path = std::getenv("CSP_TRACE");
    if (path == nullptr || *path == '\0') return;
    try {
      csp::trace_start(path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "csp: CSP_TRACE: %s; tracing is off\n", e.what());
    }
  }
};
const StartFromEnvironment g_start_from_environment;

}  // namespace

std::int64_t trace_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void trace_blocking(const char* what, std::string_view object, const Parker* p, std::int64_t begin_ns,
                    std::uintptr_t token) noexcept {
  State& s = state();
  if (s.recorded.fetch_add(1, std::memory_order_relaxed) >= kMaxTraceEvents) {
    s.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::int64_t end_ns = trace_now_ns();
  try {
    std::string process = p && !p->name_.empty() ? p->name_ : std::string(p && p->kind_ == Parker::Kind::task ? "process" : "thread");
    Buffer& b = local_buffer();
    std::lock_guard lock(b.lock);
    b.events.push_back({begin_ns, end_ns, what, std::string(object), std::move(process), token});
  } catch (...) {
    s.dropped.fetch_add(1, std::memory_order_relaxed);  // out of memory: count it, keep running
  }
}

void trace_poll_wait(const char* what, std::int64_t begin_ns, bool ready) noexcept {
  trace_blocking(what, {}, current_parker(), begin_ns, ready ? kWoken : kTimedOut);
}

bool network_recording() noexcept { return g_tracing.load(std::memory_order_relaxed); }

void record_process(const std::string& name, const char* kind, std::vector<EndInfo> ends) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (s.processes.size() >= kMaxTraceEvents) return;
  s.processes.push_back({name, kind, std::move(ends)});
}

}  // namespace csp::detail

namespace csp {

void trace_start(const std::string& path) {
  using namespace detail;
  if (path.empty()) throw Error("csp::trace_start: empty trace file path");
  State& s = state();
  {
    std::lock_guard lock(s.mutex);
    if (g_tracing.load() && s.path == path) return;  // already tracing there
    if (g_tracing.load()) {
      flush_locked(s);
      g_tracing.store(false);
    }
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("csp::trace_start: cannot write trace file '" + path + "': " + std::strerror(errno));
  ::close(fd);
  std::lock_guard lock(s.mutex);
  s.path = path;
  s.owner = ::getpid();
  for (auto& b : s.buffers) {
    std::lock_guard block(b->lock);
    b->events.clear();
  }
  s.processes.clear();
  s.child_events.clear();
  s.recorded.store(0);
  s.dropped.store(0);
  ::unlink((path + ".parts").c_str());  // a stale one from an earlier run
  if (!s.exit_hook) {
    s.exit_hook = true;
    std::atexit(flush_at_exit);
  }
  g_tracing.store(true);
}

void trace_flush() {
  detail::State& s = detail::state();
  std::lock_guard lock(s.mutex);
  if (!detail::g_tracing.load()) return;
  detail::flush_locked(s);
}

void trace_stop() {
  detail::State& s = detail::state();
  std::lock_guard lock(s.mutex);
  if (!detail::g_tracing.load()) return;
  detail::flush_locked(s);
  detail::g_tracing.store(false);
}

bool tracing() noexcept { return detail::g_tracing.load(std::memory_order_relaxed); }

std::string dot_path_for(const std::string& trace_path) {
  const std::string_view ext = ".json";
  if (trace_path.size() > ext.size() && trace_path.compare(trace_path.size() - ext.size(), ext.size(), ext) == 0)
    return trace_path.substr(0, trace_path.size() - ext.size()) + ".dot";
  return trace_path + ".dot";
}

void write_network_dot(std::ostream& out) {
  detail::State& s = detail::state();
  std::lock_guard lock(s.mutex);
  detail::write_dot_locked(s, out);
}

}  // namespace csp
