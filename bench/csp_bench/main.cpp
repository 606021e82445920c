// csp-bench: the same CSP workloads over every transport, each beside its raw
// floor, in one process run. See bench/README.md and `csp-bench --help`.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/version.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "floors.hpp"
#include "harness.hpp"
#include "options.hpp"
#include "registry.hpp"
#include "report.hpp"
#include "run_info.hpp"

#ifndef CSP_BENCH_HAVE_CSP
#define CSP_BENCH_HAVE_CSP 0
#endif

namespace cspbench {
namespace {

// SIGINT/SIGTERM/SIGHUP: unlink any shm segment a floor holds, then die of
// the same signal (forked children follow through PR_SET_PDEATHSIG).
void on_fatal_signal(int sig) {
  floors::unlink_live_segments();
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_signal_handlers() {
  signal(SIGPIPE, SIG_IGN);  // a dead peer must be EPIPE, not a kill
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

bool matches(const Entry& e, const Options& o) {
  if (!o.transports.empty()) {
    bool hit = false;
    for (const std::string& t : o.transports) hit = hit || e.transport == t;
    if (!hit) return false;
  }
  if (!o.filters.empty()) {
    const std::string name = e.name();
    bool hit = false;
    for (const std::string& f : o.filters) hit = hit || name.find(f) != std::string::npos;
    if (!hit) return false;
  }
  return true;
}

// Progress on stderr: one line rewritten in place on a terminal, one line per
// entry otherwise (logs stay readable).
class Progress {
 public:
  explicit Progress(std::size_t total) : total_(total), tty_(isatty(2)), t0_(sample_cpu().wall) {}
  void entry(std::size_t index, const std::string& name) {
    index_ = index;
    name_ = name;
    if (!tty_) std::fprintf(stderr, "csp-bench: [%zu/%zu] %s\n", index_ + 1, total_, name_.c_str());
  }
  void step(const char* phase, int rep, int reps) {
    if (!tty_) return;
    char what[64];
    if (std::strcmp(phase, "rep") == 0) std::snprintf(what, sizeof what, "rep %d/%d", rep, reps);
    else std::snprintf(what, sizeof what, "%s", phase);
    std::fprintf(stderr, "\r\033[Kcsp-bench: [%zu/%zu] %s  %s  %.0f s", index_ + 1, total_,
                 name_.c_str(), what, sample_cpu().wall - t0_);
    std::fflush(stderr);
  }
  void done() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "csp-bench: %zu entries in %.1f s\n", total_, sample_cpu().wall - t0_);
  }

 private:
  std::size_t total_;
  bool tty_;          // stderr is a terminal
  double t0_;         // start, steady seconds
  std::size_t index_ = 0;
  std::string name_;  // entry running now
};

int run(int argc, char** argv) {
  Options opt;
  try {
    opt = parse_options(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "csp-bench: %s (see csp-bench --help)\n", e.what());
    return 2;
  }
  if (opt.help) {
    std::fputs(usage_text().c_str(), stdout);
    return 0;
  }
  if (!opt.plot_path.empty() && !gnuplot_available()) {
    std::fprintf(stderr, "csp-bench: --plot needs gnuplot (apt-get install gnuplot-nox)\n");
    return 2;
  }
  // Output files must be writable before a long run starts, not after it:
  // open each for appending (creating it), and remove it again if it was new.
  for (const std::string* path : {&opt.json_path, &opt.plot_path}) {
    if (path->empty()) continue;
    const bool existed = access(path->c_str(), F_OK) == 0;
    const int fd = open(path->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "csp-bench: cannot write '%s': %s\n", path->c_str(), std::strerror(errno));
      return 2;
    }
    close(fd);
    if (!existed) unlink(path->c_str());
  }
  const std::vector<std::size_t> sizes = opt.sizes.empty() ? default_sizes(opt.full) : opt.sizes;
  HarnessConfig cfg;
  cfg.reps = opt.reps ? opt.reps : default_reps(opt.full);
  cfg.target = opt.target > 0 ? opt.target : default_target(opt.full);

  Registry reg(sizes);
  register_floor_workloads(reg);
  register_csp_workloads(reg);

  std::set<std::string> known;
  for (const Entry& e : reg.entries()) known.insert(e.transport);
  for (const std::string& t : opt.transports) {
    if (known.count(t)) continue;
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    std::fprintf(stderr, "csp-bench: unknown transport '%s' (this build has: %s)\n", t.c_str(),
                 list.c_str());
    return 2;
  }

  // Selection, plus the floors of the selected entries.
  std::vector<const Entry*> selected;
  std::set<const Entry*> chosen;
  for (const Entry& e : reg.entries())
    if (matches(e, opt)) chosen.insert(&e);
  if (chosen.empty()) {
    std::fprintf(stderr, "csp-bench: nothing matches the --filter/--transport given (see --list)\n");
    return 2;
  }
  std::set<const Entry*> needed = chosen;
  for (const Entry* e : chosen)
    if (const Entry* f = reg.floor_of(*e)) needed.insert(f);

  // Run order: each floor, then the entries compared to it; then the rest.
  struct Planned {
    const Entry* entry;
    bool group_start;
  };
  std::vector<Planned> plan;
  std::set<const Entry*> planned;
  for (const Entry& f : reg.entries()) {
    if (!f.is_floor() || !needed.count(&f)) continue;
    plan.push_back({&f, true});
    planned.insert(&f);
    for (const Entry& e : reg.entries())
      if (!e.is_floor() && chosen.count(&e) && reg.floor_of(e) == &f) {
        plan.push_back({&e, false});
        planned.insert(&e);
      }
  }
  bool first_rest = true;
  for (const Entry& e : reg.entries())
    if (needed.count(&e) && !planned.count(&e)) {
      plan.push_back({&e, first_rest});
      first_rest = false;
    }

  if (opt.list) {
    for (const Planned& p : plan) {
      const Entry& e = *p.entry;
      std::printf("%-34s %s%s\n", e.name().c_str(), e.note.c_str(),
                  chosen.count(&e) ? "" : "  [floor of a selected entry]");
    }
    for (const std::string& n : reg.notes()) std::printf("note: %s\n", n.c_str());
    return 0;
  }

  install_signal_handlers();
  const CpuSample before = sample_cpu();
  Progress progress(plan.size());
  std::vector<Row> rows;
  std::vector<std::pair<const Entry*, Measurement>> done;
  bool failed = false;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const Entry& e = *plan[i].entry;
    progress.entry(i, e.name());
    Measurement m = measure(e, cfg, [&](const char* phase, int rep) { progress.step(phase, rep, cfg.reps); });
    if (!m.error.empty()) {
      failed = true;
      std::fprintf(stderr, "%scsp-bench: %s failed: %s\n", isatty(2) ? "\r\033[K" : "",
                   e.name().c_str(), m.error.c_str());
    }
    bool first_metric = true;
    for (const Metric& metric : e.metrics) {
      Row r;
      r.entry = &e;
      r.metric = &metric;
      r.summary = summarise(metric, m);
      r.n = m.n;
      r.error = m.error;
      r.group_start = plan[i].group_start && first_metric;
      first_metric = false;
      r.floor = reg.floor_of(e);
      if (r.floor && r.error.empty()) {
        // The floor's row with the same metric name, else the first of the same kind.
        const Row* fr = nullptr;
        for (const Row& x : rows)
          if (x.entry == r.floor && x.error.empty() && x.metric->name == metric.name) fr = &x;
        if (!fr)
          for (const Row& x : rows)
            if (!fr && x.entry == r.floor && x.error.empty() && x.metric->is_rate == metric.is_rate)
              fr = &x;
        if (fr) r.ratio = cost_ratio(metric, r.summary.median, fr->summary.median);
      }
      rows.push_back(std::move(r));
    }
  }
  progress.done();
  const CpuSample after = sample_cpu();

  std::vector<std::string> notes = reg.notes();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%s mode, %d reps of ~%g s; pinning %s; hypervisor steal %.1f%%; other processes "
                "used %.1f CPU-s in %.0f s (much more than ~1 per 100 s means contention)",
                opt.full ? "full" : "quick", cfg.reps, cfg.target,
                floors::pinning_enabled() ? "on" : "off", steal_percent(before, after),
                others_cpu_seconds(before, after), after.wall - before.wall);
  notes.push_back(buf);
  print_table(stdout, rows, notes);

  int status = failed ? 1 : 0;
  if (!opt.json_path.empty() || !opt.plot_path.empty()) {
    Context ctx;
    auto str = [&](const char* k, const std::string& v) { ctx.emplace_back(k, json_string(v)); };
    auto num = [&](const char* k, double v) { ctx.emplace_back(k, json_number(v)); };
    str("tool", "csp-bench");
    str("date", utc_now());
    str("host", host_name());
    num("nproc", double(sysconf(_SC_NPROCESSORS_ONLN)));
    str("cpu", cpu_model());
    str("kernel", kernel_release());
    str("compiler", "g++ " __VERSION__);
    str("boost", BOOST_LIB_VERSION);
    str("mode", opt.full ? "full" : "quick");
    num("reps", cfg.reps);
    num("target_s", cfg.target);
    ctx.emplace_back("pinning", floors::pinning_enabled() ? "true" : "false");
    ctx.emplace_back("csp", CSP_BENCH_HAVE_CSP ? "true" : "false");
    std::string sz = "[";
    for (std::size_t i = 0; i < sizes.size(); ++i) sz += (i ? ", " : "") + std::to_string(sizes[i]);
    ctx.emplace_back("sizes", sz + "]");
    str("loadavg_before", before.loadavg);
    str("loadavg_after", after.loadavg);
    num("steal_percent", steal_percent(before, after));
    num("others_cpu_s", others_cpu_seconds(before, after));
    num("wall_s", after.wall - before.wall);
    std::string cmd;
    for (int i = 0; i < argc; ++i) cmd += (i ? " " : "") + std::string(argv[i]);
    str("command", cmd);
    std::string ns = "[";
    for (std::size_t i = 0; i < notes.size(); ++i) ns += (i ? ", " : "") + json_string(notes[i]);
    ctx.emplace_back("notes", ns + "]");
    if (!opt.json_path.empty()) {
      try {
        write_json(opt.json_path, ctx, rows);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "csp-bench: %s\n", e.what());
        status = 1;
      }
    }
    if (!opt.plot_path.empty()) {
      try {
        write_plot(opt.plot_path,
                   "csp-bench (" + std::string(opt.full ? "full" : "quick") + ") on " + host_name() +
                       ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, " + utc_now(),
                   rows);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "csp-bench: --plot: %s\n", e.what());
        status = 1;
      }
    }
  }
  return status;
}

}  // namespace
}  // namespace cspbench

int main(int argc, char** argv) { return cspbench::run(argc, argv); }
