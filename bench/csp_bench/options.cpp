// options.cpp: csp-bench's command line and --help.
#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace cspbench {

std::vector<std::size_t> default_sizes(bool full) {
  // Quick: exactly the sizes issue 4's targets name. Full adds steps between.
  if (full) return {8, 64, 512, 4096, 32768, 65536, 262144, 1048576};
  return {8, 64, 4096, 65536, 1048576};
}
int default_reps(bool full) { return full ? 7 : 3; }
double default_target(bool full) { return full ? 0.3 : 0.05; }

std::string usage_text() {
  return R"(usage: csp-bench [options]

Runs the same CSP workloads over every transport csp has, each right after
the raw floor it is compared to, in one process run, and prints one table.

Workloads
  commstime   Prefix -> Delta -> {Consume, Succ -> Prefix}, unbuffered channels;
              ns per communication; floor: a Boost.Context switch (floor:fiber)
              in process, else the transport's ping-pong hop; over shm, pipe,
              unix, tcp Delta and Succ each run in a csp::os_process
  pingpong    a message of SIZE bytes there and back; ns per hop (round trip / 2)
  stream      messages of SIZE bytes one way; msg/s and MB/s (MB = 10^6 bytes)
  wakeup      a stamp sent after a 150 us pause to a reader that has parked;
              mean ns from send to receipt; thread vs floor:shm-futex, shm vs
              floor:shm-eventfd; sides pinned to two CPUs
Transports
  inproc-1w   coroutines, 1 worker thread          floors: floor:fiber, floor:memcpy
  inproc-Nw   coroutines, one worker per CPU       floor:  floor:shm-ring
  thread      csp::thread_process (OS threads)     floors: floor:shm-ring, floor:shm-futex
  shm pipe unix tcp   csp::os_process children with CSP_TRANSPORT=<name>
                                                   floors: floor:shm-ring, floor:pipe,
                                                           floor:unix, floor:tcp
  floor:*     raw floors without csp: fiber (switch, pingpong), memcpy (stream),
              shm-ring (spinning SPSC ring in POSIX shm; pingpong, stream),
              shm-futex, shm-eventfd (sleeping ring; pingpong, wakeup), pipe, unix, tcp
  (--list shows what this build has; csp workloads need csp-bench built with csp.)

Options
  --quick           the default: sizes 8,64,4K,64K,1M; 3 repetitions of ~0.05 s
                    (about a minute on 2 cores)
  --full            sizes 8,64,512,4K,32K,64K,256K,1M; 7 repetitions of ~0.3 s
  --filter LIST     run entries whose name contains any of the comma-separated
                    substrings; names are workload/transport[/size], e.g.
                    pingpong/shm/4K, stream/floor:pipe/1M, commstime/inproc-1w
  --transport LIST  run only these transports (comma-separated, exact names)
  --sizes LIST      message sizes, e.g. 8,64,4K,64K,1M (K = 1024, M = 1024^2;
                    8 B to 64 MiB)
  --reps N          repetitions per entry (default: 3 quick, 7 full)
  --target SECONDS  time per repetition (default: 0.05 quick, 0.3 full)
  --json FILE       also write every figure, per repetition, as JSON
  --plot FILE.svg   plot latency and throughput against message size per
                    transport (needs gnuplot: apt-get install gnuplot-nox;
                    checked before anything runs)
  --list            print the entries the other options select; run nothing
  -h, --help        this text

Floors of the selected entries always run too (a ratio needs its floor).
Ratio = csp cost / floor cost on medians: time per op / floor time per op,
or floor rate / rate; 2.0x means half the floor's speed. Rows whose spread
(max - min) / median exceeds 25% are marked (!): read them as ranges.

Output: the table on stdout, a progress line on stderr.
Environment: PIN=0 stops pinning the two sides of cross-CPU floors to the
first two allowed CPUs. Each csp measurement runs in a freshly forked child
that configures its own runtime (1 worker, or one per CPU), so csp-bench
itself never starts csp and the floors run undisturbed.
Exit status: 0 ok, 1 some benchmark failed (the others are reported),
2 bad arguments, an unwritable --json/--plot path, or --plot without
gnuplot (all checked before anything runs).
)";
}

namespace {

std::vector<std::string> split_list(const std::string& s, const std::string& opt) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) throw UsageError(opt + ": empty item in '" + s + "'");
    out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::size_t parse_size(const std::string& item) {
  std::size_t i = 0;
  while (i < item.size() && std::isdigit(static_cast<unsigned char>(item[i]))) ++i;
  if (i == 0 || i > 9) throw UsageError("--sizes: '" + item + "' is not a size (e.g. 8, 4K, 1M)");
  std::size_t v = std::stoul(item.substr(0, i));
  std::string suffix = item.substr(i);
  for (char& c : suffix) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (suffix == "" || suffix == "B") {
  } else if (suffix == "K" || suffix == "KB" || suffix == "KIB") {
    v <<= 10;
  } else if (suffix == "M" || suffix == "MB" || suffix == "MIB") {
    v <<= 20;
  } else {
    throw UsageError("--sizes: unknown unit in '" + item + "' (use B, K or M)");
  }
  if (v < 8 || v > (std::size_t(64) << 20))
    throw UsageError("--sizes: '" + item + "' is out of range (8 B to 64M)");
  return v;
}

}  // namespace

std::vector<std::size_t> parse_sizes(const std::string& list) {
  std::vector<std::size_t> sizes;
  for (const std::string& item : split_list(list, "--sizes")) sizes.push_back(parse_size(item));
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      const std::size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_value = true;
      }
    }
    auto take = [&]() -> std::string {
      if (has_value) {
        if (value.empty()) throw UsageError(arg + " needs a value");
        return value;
      }
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    auto no_value = [&] {
      if (has_value) throw UsageError(arg + " takes no value");
    };
    if (arg == "-h" || arg == "--help") {
      no_value();
      o.help = true;
    } else if (arg == "--quick") {
      no_value();
      quick = true;
    } else if (arg == "--full") {
      no_value();
      o.full = true;
    } else if (arg == "--list") {
      no_value();
      o.list = true;
    } else if (arg == "--filter") {
      for (std::string& f : split_list(take(), arg)) o.filters.push_back(std::move(f));
    } else if (arg == "--transport") {
      for (std::string& t : split_list(take(), arg)) o.transports.push_back(std::move(t));
    } else if (arg == "--sizes") {
      o.sizes = parse_sizes(take());
    } else if (arg == "--json") {
      o.json_path = take();
    } else if (arg == "--plot") {
      o.plot_path = take();
    } else if (arg == "--reps") {
      const std::string v = take();
      char* end = nullptr;
      errno = 0;
      const long r = std::strtol(v.c_str(), &end, 10);
      if (errno || end == v.c_str() || *end || r < 1 || r > 1000)
        throw UsageError("--reps: '" + v + "' is not a count from 1 to 1000");
      o.reps = int(r);
    } else if (arg == "--target") {
      const std::string v = take();
      char* end = nullptr;
      errno = 0;
      const double t = std::strtod(v.c_str(), &end);
      if (errno || end == v.c_str() || *end || !(t >= 0.001 && t <= 60))
        throw UsageError("--target: '" + v + "' is not a number of seconds from 0.001 to 60");
      o.target = t;
    } else if (arg.rfind("-", 0) == 0) {
      throw UsageError("unknown option '" + arg + "'");
    } else {
      throw UsageError("unexpected argument '" + arg + "'");
    }
  }
  if (quick && o.full) throw UsageError("--quick and --full exclude each other");
  return o;
}

}  // namespace cspbench
