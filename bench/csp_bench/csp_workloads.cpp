// csp_workloads.cpp: the csp side of csp-bench. Built with the csp library
// only when bench/CMakeLists.txt finds it (CSP_BENCH_HAVE_CSP=1); otherwise
// csp-bench runs the floors alone and says so in a note.
//
// Every measurement (one call of an entry's run(n)) happens in a freshly
// forked child of csp-bench: the child configures its own runtime (1 worker,
// or one per CPU), runs the workload, reports the seconds of the timed part
// through a pipe and exits. So csp-bench itself never starts csp (no idle
// workers disturb the floors), each transport starts from a clean runtime,
// and a hang or crash in csp is a reported failure after kTimeout, not a
// stuck benchmark. Setup (fork, runtime start, process creation) is outside
// the timed part: each workload starts its clock after a first exchange.
//
// Messages: pingpong and stream carry std::vector<unsigned char> of `size`
// bytes. The sender builds every message afresh (allocate, fill `size` bytes,
// stamp a sequence number at both ends), as the floors copy `size` bytes once
// per hop; filling rather than copying keeps glibc's 4 KiB-aliasing memcpy
// trap (see floors/memcpy.cpp) out of the figures. The receiver checks the
// stamps of every message. In process the vector is moved, not copied.
// The measurement child sets glibc's mmap and trim thresholds high so freed
// messages are reused instead of being unmapped and faulted in again.
#include "detail.hpp"
#include "floors.hpp"
#include "registry.hpp"

#ifndef CSP_BENCH_HAVE_CSP
#define CSP_BENCH_HAVE_CSP 0
#endif

#if CSP_BENCH_HAVE_CSP

#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

// Cross-process workloads need csp::os_process (channels/transport).
#if __has_include(<csp/os_process.hpp>)
#include <csp/os_process.hpp>
#define CSP_BENCH_HAVE_OS_PROCESS 1
#else
#define CSP_BENCH_HAVE_OS_PROCESS 0
#endif

namespace cspbench {
namespace {

using Msg = std::vector<unsigned char>;

/// A measurement that takes longer than this is a hang: the child is killed.
constexpr int kTimeoutMs = 15000;

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Sequence stamp: seq in the first 8 bytes, ~seq in the last 8 (size >= 16).
Msg make_msg(std::size_t size, std::uint64_t seq) {
  Msg m(size, 0xA5);
  std::memcpy(m.data(), &seq, 8);
  if (size >= 16) {
    const std::uint64_t inv = ~seq;
    std::memcpy(m.data() + size - 8, &inv, 8);
  }
  return m;
}

void check_msg(const Msg& m, std::size_t size, std::uint64_t seq) {
  std::uint64_t a = 0, b = ~seq;
  if (m.size() == size) {
    std::memcpy(&a, m.data(), 8);
    if (size >= 16) std::memcpy(&b, m.data() + size - 8, 8);
  }
  if (m.size() != size || a != seq || b != ~seq)
    throw std::runtime_error("message " + std::to_string(seq) + " arrived damaged or out of order");
}

void write_full(int fd, const void* p, std::size_t len) {
  auto* c = static_cast<const char*>(p);
  while (len) {
    const ssize_t w = write(fd, c, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    c += w;
    len -= std::size_t(w);
  }
}

// Runs body() in a forked child and returns what it returns. The child dies
// with csp-bench (PR_SET_PDEATHSIG); its result or exception message comes
// back through a pipe: 'O' + double, or 'E' + text.
double run_isolated(const std::function<double()>& body) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  const pid_t parent = getpid();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    // Keep freed messages in the heap: otherwise glibc maps and unmaps every
    // large message (or trims the heap under a deep buffer) and page faults,
    // not csp, dominate the large-message figures.
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    std::string out;
    try {
      const double secs = body();
      csp::shutdown();
      out = "O";
      out.append(reinterpret_cast<const char*>(&secs), sizeof secs);
    } catch (const std::exception& e) {
      out = std::string("E") + e.what();
    } catch (...) {
      out = "Eunknown exception";
    }
    write_full(fds[1], out.data(), out.size());
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  const double deadline = now_s() + kTimeoutMs / 1000.0;
  bool timed_out = false;
  for (;;) {
    const int left = int((deadline - now_s()) * 1000);
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    const ssize_t k = read(fds[0], buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;  // EOF: the child has exited or closed the pipe
    got.append(buf, std::size_t(k));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (timed_out)
    throw std::runtime_error("no result after " + std::to_string(kTimeoutMs / 1000) +
                             " s (deadlock or hang?); measurement child killed");
  if (!got.empty() && got[0] == 'E') throw std::runtime_error(got.substr(1));
  if (got.size() == 1 + sizeof(double) && got[0] == 'O') {
    double secs = 0;
    std::memcpy(&secs, got.data() + 1, sizeof secs);
    return secs;
  }
  if (WIFSIGNALED(st))
    throw std::runtime_error(std::string("measurement child killed by signal ") + strsignal(WTERMSIG(st)));
  throw std::runtime_error("measurement child exited with status " + std::to_string(WEXITSTATUS(st)) +
                           " and no result");
}

// ------------------------------------------------------------------ workloads

// Where commstime's processes run: all four as coroutines; all four as
// csp::thread_process threads; or Prefix and Consume as coroutines of the
// measurement child while Delta and Succ each run in a csp::os_process of
// their own, so three of the four channels (a, b, c) cross between the
// parent and a child and d runs between the two children through its home.
enum class Place { coroutine, thread, os_process };

// One of commstime's processes, placed as `place` says; `movable` is false
// for Prefix and Consume, which stay in the measurement child (Consume
// holds the clock).
template <class F, class... Args>
csp::Process<void> place_process(Place place, bool movable, F&& f, Args&&... args) {
  switch (place) {
    case Place::thread:
      return csp::thread_process(std::forward<F>(f), std::forward<Args>(args)...);
    case Place::os_process:
#if CSP_BENCH_HAVE_OS_PROCESS
      if (movable) return csp::os_process(std::forward<F>(f), std::forward<Args>(args)...);
#endif
      [[fallthrough]];
    case Place::coroutine:
      break;
  }
  (void)movable;
  return csp::process(std::forward<F>(f), std::forward<Args>(args)...);
}

// commstime: Prefix(0) -> a -> Delta -> {c -> Consume, d -> Succ}, Succ -> b
// -> Prefix, unbuffered channels, sequential Delta (as the floors' baseline
// and Boost.Fiber/Go peers). n + 1 loops; Consume times the last n (loop 0
// is the warm-up), 4 communications each.
double commstime(unsigned workers, Place place, std::uint64_t n) {
  csp::configure({.workers = workers});
  csp::Channel<std::uint64_t> a{"a"}, b{"b"}, c{"c"}, d{"d"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      place_process(
          place, false,
          [n](csp::Writer<std::uint64_t> out, csp::Reader<std::uint64_t> in) {  // Prefix
            out.write(0);
            for (std::uint64_t i = 0; i < n; ++i) out.write(in.read());
            if (in.read() != n + 1) throw std::runtime_error("commstime: wrong final value");
          },
          a.writer(), b.reader()),
      place_process(
          place, true,
          [n](csp::Reader<std::uint64_t> in, csp::Writer<std::uint64_t> out1,
              csp::Writer<std::uint64_t> out2) {  // Delta
            for (std::uint64_t i = 0; i <= n; ++i) {
              const std::uint64_t v = in.read();
              out1.write(v);
              out2.write(v);
            }
          },
          a.reader(), c.writer(), d.writer()),
      place_process(
          place, true,
          [n](csp::Reader<std::uint64_t> in, csp::Writer<std::uint64_t> out) {  // Succ
            for (std::uint64_t i = 0; i <= n; ++i) out.write(in.read() + 1);
          },
          d.reader(), b.writer()),
      place_process(
          place, false,
          [n, &t0, &t1](csp::Reader<std::uint64_t> in) {  // Consume
            for (std::uint64_t i = 0; i <= n; ++i) {
              if (in.read() != i) throw std::runtime_error("commstime: value out of order");
              if (i == 0) t0 = now_s();
            }
            t1 = now_s();
          },
          c.reader()));
  return t1 - t0;
}

// Either kind of csp process, for workloads that run on coroutines or threads.
template <class F, class... Args>
auto spawnable(bool on_thread, F&& f, Args&&... args) {
  return on_thread ? csp::thread_process(std::forward<F>(f), std::forward<Args>(args)...)
                   : csp::process(std::forward<F>(f), std::forward<Args>(args)...);
}

// wakeup: n + 1 stamps (the first is the warm-up) over an unbuffered
// channel to a reader that has parked: the writer pauses kWakeGapNs (longer
// than any spin bound) before each. The reader sums (its clock on receipt -
// the stamp) and sends the sum back; that sum, not wall time, is returned.
// On Place::os_process the reader runs in a csp::os_process child and the
// writer is a coroutine of the home; on Place::thread both are threads.
// Like the floors, the two sides are pinned to two different CPUs (unless
// PIN=0): a wake-up across CPUs is what the floor measures.
double wakeup(Place place, std::uint64_t n) {
  csp::Channel<std::uint64_t> stamps{"stamps"}, total{"total"};
  std::uint64_t sum = 0;
  int writer_cpu = -1, reader_cpu = -1;
  if (!floors::detail::pin_cpus(writer_cpu, reader_cpu)) writer_cpu = reader_cpu = -1;
  csp::Parallel(
      place_process(
          place, false,
          [n, &sum, writer_cpu](csp::Writer<std::uint64_t> out, csp::Reader<std::uint64_t> result) {
            const floors::detail::PinScope pin(writer_cpu);
            for (std::uint64_t i = 0; i <= n; ++i) {
              csp::sleep_for(std::chrono::nanoseconds(floors::kWakeGapNs));
              out.write(floors::monotonic_ns());
            }
            sum = result.read();
          },
          stamps.writer(), total.reader()),
      place_process(
          place, true,
          [n, reader_cpu](csp::Reader<std::uint64_t> in, csp::Writer<std::uint64_t> result) {
            const floors::detail::PinScope pin(reader_cpu);
            std::uint64_t s = 0;
            for (std::uint64_t i = 0; i <= n; ++i) {
              const std::uint64_t sent = in.read();
              const std::uint64_t now = floors::monotonic_ns();
              if (sent > now) throw std::runtime_error("wakeup: a stamp from the future");
              if (i > 0) s += now - sent;
            }
            result.write(s);
          },
          stamps.reader(), total.writer()));
  return double(sum) * 1e-9;
}

// pingpong: n + 1 round trips of a `size`-byte message over two unbuffered
// channels; the first is the warm-up. The echo answers each message i with a
// fresh message i + 1.
double pingpong(unsigned workers, bool on_thread, std::size_t size, std::uint64_t n) {
  csp::configure({.workers = workers});
  csp::Channel<Msg> ping{"ping"}, pong{"pong"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      spawnable(
          on_thread,
          [n, size, &t0, &t1](csp::Writer<Msg> out, csp::Reader<Msg> in) {
            for (std::uint64_t i = 0; i <= n; ++i) {
              if (i == 1) t0 = now_s();
              out.write(make_msg(size, i));
              check_msg(in.read(), size, i + 1);
            }
            t1 = now_s();
          },
          ping.writer(), pong.reader()),
      spawnable(
          on_thread,
          [n, size](csp::Reader<Msg> in, csp::Writer<Msg> out) {
            for (std::uint64_t i = 0; i <= n; ++i) {
              check_msg(in.read(), size, i);
              out.write(make_msg(size, i + 1));
            }
          },
          ping.reader(), pong.writer()));
  return n ? t1 - t0 : 0.0;
}

// Buffer of the stream channel: 64 messages, fewer for large ones (at most
// about 4 MiB in flight), never under 4.
std::size_t stream_capacity(std::size_t size) {
  return std::clamp<std::size_t>((std::size_t(4) << 20) / size, 4, 64);
}

// stream: after a ready signal, n messages one way through a buffered
// channel; the receiver checks each and acknowledges the total; the clock
// stops at the acknowledgement (as the floors' streams).
double stream(unsigned workers, bool on_thread, std::size_t size, std::uint64_t n) {
  csp::configure({.workers = workers});
  csp::Channel<Msg> data{"data", csp::buffer(stream_capacity(size))};
  csp::Channel<std::uint64_t> ack{"ack"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      spawnable(
          on_thread,
          [n, size, &t0, &t1](csp::Writer<Msg> out, csp::Reader<std::uint64_t> acks) {
            if (acks.read() != 0) throw std::runtime_error("stream: bad ready signal");
            t0 = now_s();
            for (std::uint64_t i = 0; i < n; ++i) out.write(make_msg(size, i));
            if (acks.read() != n) throw std::runtime_error("stream: wrong count acknowledged");
            t1 = now_s();
          },
          data.writer(), ack.reader()),
      spawnable(
          on_thread,
          [n, size](csp::Reader<Msg> in, csp::Writer<std::uint64_t> acks) {
            acks.write(0);
            for (std::uint64_t i = 0; i < n; ++i) check_msg(in.read(), size, i);
            acks.write(n);
          },
          data.reader(), ack.writer()));
  return t1 - t0;
}

#if CSP_BENCH_HAVE_OS_PROCESS
// Cross-process: the parent side runs as a csp::process, the other side in a
// csp::os_process child; both channels are arguments of the child, so they
// cross the boundary over the transport CSP_TRANSPORT names (set here, in the
// measurement child, before anything is connected). The parent is the
// channels' home, as in any os_process program.
void use_transport(const char* kind) {
  if (setenv("CSP_TRANSPORT", kind, 1) != 0) throw std::runtime_error("setenv CSP_TRANSPORT failed");
}

// Warm-up of the cross-process workloads: each runs its exchange untimed
// for this long before the clock starts. For the first 10-40 ms after a
// fork the kernel often runs the new child on its parent's CPU while the
// other idles (until its balancer moves one), and a ping-pong hop then costs
// a park and a wake-up; the floors pin their two sides to two CPUs, so
// without it a 0.05 s repetition measures mostly that start-up phase.
constexpr double kOsWarmUpS = 0.04;

double os_pingpong(const char* kind, std::size_t size, std::uint64_t n) {
  use_transport(kind);
  csp::Channel<Msg> ping{"ping"}, pong{"pong"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      csp::process(
          [n, size, &t0, &t1](csp::Writer<Msg> out, csp::Reader<Msg> in) {
            std::uint64_t i = 0;
            const double warm_until = now_s() + kOsWarmUpS;
            do {
              out.write(make_msg(size, i));
              check_msg(in.read(), size, i + 1);
              ++i;
            } while (now_s() < warm_until);
            t0 = now_s();
            for (const std::uint64_t end = i + n; i < end; ++i) {
              out.write(make_msg(size, i));
              check_msg(in.read(), size, i + 1);
            }
            t1 = now_s();
            out.retire();  // ends the echo
          },
          ping.writer(), pong.reader()),
      csp::os_process(
          [size](csp::Reader<Msg> in, csp::Writer<Msg> out) {
            std::uint64_t i = 0;
            for (const Msg& m : in) {
              check_msg(m, size, i);
              out.write(make_msg(size, ++i));
            }
          },
          ping.reader(), pong.writer()));
  return n ? t1 - t0 : 0.0;
}

double os_stream(const char* kind, std::size_t size, std::uint64_t n) {
  use_transport(kind);
  csp::Channel<Msg> data{"data", csp::buffer(stream_capacity(size))};
  csp::Channel<std::uint64_t> ack{"ack"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      csp::process(
          [n, size, &t0, &t1](csp::Writer<Msg> out, csp::Reader<std::uint64_t> acks) {
            if (acks.read() != 0) throw std::runtime_error("stream: bad ready signal");
            std::uint64_t i = 0;
            const double warm_until = now_s() + kOsWarmUpS;
            while (now_s() < warm_until) out.write(make_msg(size, i++));
            t0 = now_s();
            for (const std::uint64_t end = i + n; i < end; ++i) out.write(make_msg(size, i));
            out.retire();  // the receiver counts until the writers retire
            if (acks.read() != i) throw std::runtime_error("stream: wrong count acknowledged");
            t1 = now_s();
          },
          data.writer(), ack.reader()),
      csp::os_process(
          [size](csp::Reader<Msg> in, csp::Writer<std::uint64_t> acks) {
            acks.write(0);
            std::uint64_t i = 0;
            for (const Msg& m : in) check_msg(m, size, i++);
            acks.write(i);
          },
          data.reader(), ack.writer()));
  return t1 - t0;
}

// stream-up: as stream, the other way: the child writes into the parent's
// (the home's) buffered channel, so the child's writes are pipelined. The
// child warms up, then says how many it sent so far (the clock starts
// there) and streams n more.
double os_stream_up(const char* kind, std::size_t size, std::uint64_t n) {
  use_transport(kind);
  csp::Channel<Msg> data{"data", csp::buffer(stream_capacity(size))};
  csp::Channel<std::uint64_t> go{"go"}, warm{"warm"};
  double t0 = 0, t1 = 0;
  csp::Parallel(
      csp::process(
          [n, size, &t0, &t1](csp::Reader<Msg> in, csp::Writer<std::uint64_t> start,
                              csp::Reader<std::uint64_t> warmed) {
            start.write(0);
            std::uint64_t i = 0;
            csp::Alternation alt{csp::input(warmed), csp::input(in)};
            for (bool warming = true; warming;) {
              // The child says it warmed up (and how many it sent) while
              // its messages may still fill the buffer.
              auto s = alt.pri_select();
              if (s.index == 0) {
                const std::uint64_t sent = s.value<std::uint64_t>();
                for (; i < sent; ++i) check_msg(in.read(), size, i);
                warming = false;
              } else {
                check_msg(s.value<Msg>(), size, i++);
              }
            }
            t0 = now_s();
            for (const std::uint64_t end = i + n; i < end; ++i) check_msg(in.read(), size, i);
            t1 = now_s();
          },
          data.reader(), go.writer(), warm.reader()),
      csp::os_process(
          [n, size](csp::Writer<Msg> out, csp::Reader<std::uint64_t> start, csp::Writer<std::uint64_t> warmed) {
            if (start.read() != 0) throw std::runtime_error("stream-up: bad start signal");
            std::uint64_t i = 0;
            const double warm_until = now_s() + kOsWarmUpS;
            while (now_s() < warm_until) out.write(make_msg(size, i++));
            warmed.write(i);
            for (const std::uint64_t end = i + n; i < end; ++i) out.write(make_msg(size, i));
          },
          data.writer(), go.reader(), warm.writer()));
  return t1 - t0;
}
#endif  // CSP_BENCH_HAVE_OS_PROCESS

}  // namespace

void register_csp_workloads(Registry& reg) {
  // In-process transports: {transport, workers (0 = one per CPU), on threads}.
  struct Inproc {
    const char* transport;
    unsigned workers;
    bool on_thread;
    const char* pingpong_floor;  // the floor a hop is compared to
    const char* stream_floor;
    const char* what;
  };
  const Inproc inproc[] = {
      {"inproc-1w", 1, false, "floor:fiber", "floor:memcpy", "coroutines on 1 worker"},
      {"inproc-Nw", 0, false, "floor:shm-ring", "floor:shm-ring", "coroutines, one worker per CPU"},
      // A blocked thread spins up to 10 us before it sleeps on its futex, so
      // a hop between two threads on two CPUs compares to the spinning ring.
      {"thread", 0, true, "floor:shm-ring", "floor:shm-ring", "csp::thread_process on both sides"},
  };
  // commstime carries 8-byte values: where it crosses threads or OS
  // processes, it compares to that transport's ping-pong hop at the
  // smallest size of the run (one communication costs about one hop).
  const std::optional<std::size_t> hop_size =
      reg.sizes().empty() ? std::nullopt : std::optional<std::size_t>(reg.sizes().front());
  for (const Inproc& t : inproc) {
    const unsigned w = t.workers;
    const Place place = t.on_thread ? Place::thread : Place::coroutine;
    reg.add({.workload = "commstime",
             .transport = t.transport,
             .metrics = {ns_per_comm()},
             .floor = t.on_thread ? FloorRef{"floor:shm-futex", "pingpong", hop_size}
                                  : FloorRef{"floor:fiber", "switch"},
             .run = [w, place](std::uint64_t n) { return run_isolated([=] { return commstime(w, place, n); }); },
             .n0 = t.on_thread ? std::uint64_t(10) : std::uint64_t(1000),
             .note = std::string("Prefix/Delta/Succ/Consume, unbuffered; ") +
                     (t.on_thread ? "each a csp::thread_process" : t.what)});
  }
  reg.add({.workload = "wakeup",
           .transport = "thread",
           .metrics = {ns_per_wake()},
           .floor = {"floor:shm-futex", ""},
           .run = [](std::uint64_t n) {
             return run_isolated([=] {
               csp::configure({.workers = 0});
               return wakeup(Place::thread, n);
             });
           },
           .n0 = 10,
           .note = "csp::thread_process writer pauses 150 us, then writes a stamp to a parked "
                   "csp::thread_process reader; mean latency"});
  for (std::size_t s : reg.sizes()) {
    for (const Inproc& t : inproc) {
      const unsigned w = t.workers;
      const bool th = t.on_thread;
      reg.add({.workload = "pingpong",
               .transport = t.transport,
               .size = s,
               .metrics = {ns_per_hop()},
               .floor = {t.pingpong_floor, ""},
               .run = [w, th, s](std::uint64_t n) {
                 return run_isolated([=] { return pingpong(w, th, s, n); });
               },
               .n0 = 100,
               .note = std::string("two unbuffered Channel<vector<uchar>>; ") + t.what});
      reg.add({.workload = "stream",
               .transport = t.transport,
               .size = s,
               .metrics = stream_metrics(s),
               .floor = {t.stream_floor, ""},
               .run = [w, th, s](std::uint64_t n) {
                 return run_isolated([=] { return stream(w, th, s, n); });
               },
               .n0 = 100,
               .note = "buffered Channel<vector<uchar>> (" + std::to_string(stream_capacity(s)) +
                       "), ack at the end; " + t.what});
    }
  }
#if CSP_BENCH_HAVE_OS_PROCESS
  // Cross-process transports: {transport = CSP_TRANSPORT value, floor}.
  struct CrossProcess {
    const char* transport;
    const char* floor;
  };
  const CrossProcess cross[] = {
      {"shm", "floor:shm-ring"}, {"pipe", "floor:pipe"}, {"unix", "floor:unix"}, {"tcp", "floor:tcp"}};
  for (const CrossProcess& t : cross) {
    const char* kind = t.transport;
    reg.add({.workload = "commstime",
             .transport = t.transport,
             .metrics = {ns_per_comm()},
             .floor = {t.floor, "pingpong", hop_size},
             .run = [kind](std::uint64_t n) {
               return run_isolated([=] {
                 use_transport(kind);
                 return commstime(0, Place::os_process, n);
               });
             },
             .n0 = 10,
             .note = std::string("Prefix/Delta/Succ/Consume, unbuffered; Delta and Succ each in a "
                                 "csp::os_process, Prefix and Consume in the parent (home of every "
                                 "channel), CSP_TRANSPORT=") +
                     kind});
  }
  // A parked reader woken: shm's reader parks on an eventfd in its worker's
  // epoll reactor, so it compares to the eventfd ring.
  reg.add({.workload = "wakeup",
           .transport = "shm",
           .metrics = {ns_per_wake()},
           .floor = {"floor:shm-eventfd", ""},
           .run = [](std::uint64_t n) {
             return run_isolated([=] {
               use_transport("shm");
               return wakeup(Place::os_process, n);
             });
           },
           .n0 = 10,
           .note = "a coroutine of the home pauses 150 us, then writes a stamp to a csp::os_process "
                   "child parked in read(), CSP_TRANSPORT=shm; mean latency"});
  for (std::size_t s : reg.sizes()) {
    for (const CrossProcess& t : cross) {
      const char* kind = t.transport;
      reg.add({.workload = "pingpong",
               .transport = t.transport,
               .size = s,
               .metrics = {ns_per_hop()},
               .floor = {t.floor, ""},
               .run = [kind, s](std::uint64_t n) {
                 return run_isolated([=] { return os_pingpong(kind, s, n); });
               },
               .n0 = 10,
               .note = std::string("csp::process <-> csp::os_process, CSP_TRANSPORT=") + kind});
      reg.add({.workload = "stream",
               .transport = t.transport,
               .size = s,
               .metrics = stream_metrics(s),
               .floor = {t.floor, ""},
               .run = [kind, s](std::uint64_t n) {
                 return run_isolated([=] { return os_stream(kind, s, n); });
               },
               .n0 = 10,
               .note = "buffered (" + std::to_string(stream_capacity(s)) +
                       ") to a csp::os_process, ack at the end, CSP_TRANSPORT=" + kind});
      reg.add({.workload = "stream-up",
               .transport = t.transport,
               .size = s,
               .metrics = stream_metrics(s),
               .floor = {t.floor, "stream"},
               .run = [kind, s](std::uint64_t n) {
                 return run_isolated([=] { return os_stream_up(kind, s, n); });
               },
               .n0 = 10,
               .note = "buffered (" + std::to_string(stream_capacity(s)) +
                       ") from a csp::os_process into its parent (pipelined writes), CSP_TRANSPORT=" + kind});
    }
  }
#else
  reg.note(
      "cross-process transports (shm, pipe, unix, tcp) are left out: this build has no "
      "csp::os_process (<csp/os_process.hpp>)");
#endif
}

}  // namespace cspbench

#else  // !CSP_BENCH_HAVE_CSP

namespace cspbench {

void register_csp_workloads(Registry& reg) {
  reg.note("built without the csp library: floors only (csp workloads need csp::csp at configure time)");
}

}  // namespace cspbench

#endif
