// report.cpp: table, JSON and gnuplot output.
#include "report.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace cspbench {

double cost_ratio(const Metric& m, double median, double floor_median) {
  if (!(median > 0) || !(floor_median > 0)) return -1;
  return m.is_rate ? floor_median / median : median / floor_median;
}

std::string format_figure(double v) {
  char buf[64];
  const double a = std::fabs(v);
  if (!std::isfinite(v)) return "-";
  if (a >= 1e10) {
    std::snprintf(buf, sizeof buf, "%.3g G", v / 1e9);
  } else if (a >= 1e7) {
    std::snprintf(buf, sizeof buf, "%.3g M", v / 1e6);
  } else if (a >= 1000) {
    // Integer with thousands separators.
    const std::string digits = std::to_string(static_cast<long long>(std::llround(v)));
    std::string out;
    const std::size_t lead = digits.size() % 3 ? digits.size() % 3 : 3;
    out = digits.substr(0, lead);
    for (std::size_t i = lead; i < digits.size(); i += 3) out += "," + digits.substr(i, 3);
    return out;
  } else if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  }
  return buf;
}

// ------------------------------------------------------------------- table

void print_table(std::FILE* out, const std::vector<Row>& rows,
                 const std::vector<std::string>& notes) {
  const std::vector<std::string> head = {"workload", "size", "transport", "unit",  "median",
                                         "min",      "max",  "spread",    "ratio", "floor"};
  std::vector<std::vector<std::string>> cells;
  std::vector<bool> gap;  // blank line before this row
  for (const Row& r : rows) {
    const Entry& e = *r.entry;
    std::vector<std::string> c = {e.workload, e.size ? size_label(e.size) : "-", e.transport,
                                  r.metric->unit};
    if (!r.error.empty()) {
      c.insert(c.end(), {"FAILED", "", "", "", "", r.error.substr(0, r.error.find('\n'))});
    } else {
      const Summary& s = r.summary;
      const double spread = s.median > 0 ? (s.max - s.min) / s.median * 100 : 0;
      char sp[32];
      std::snprintf(sp, sizeof sp, "%.0f%%%s", spread, spread > 25 ? " (!)" : "");
      char ratio[32] = "-";
      if (r.ratio > 0) std::snprintf(ratio, sizeof ratio, "%.2fx", r.ratio);
      std::string floor = "-";
      if (r.floor) floor = r.floor->transport + (r.floor->workload != e.workload ? " " + r.floor->workload : "");
      c.insert(c.end(), {format_figure(s.median), format_figure(s.min), format_figure(s.max), sp,
                         ratio, floor});
    }
    cells.push_back(std::move(c));
  }
  // Groups (a floor and the entries compared to it) are set apart by a blank
  // line when either has csp entries or the floor's transport changes, so a
  // floors-only run stays compact.
  {
    std::vector<std::size_t> group(rows.size()), entries_in;
    std::vector<std::string> group_transport;
    const Entry* last = nullptr;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].group_start || i == 0) {
        entries_in.push_back(0);
        group_transport.push_back(rows[i].entry->transport);
        last = nullptr;
      }
      group[i] = entries_in.size() - 1;
      if (rows[i].entry != last) ++entries_in.back();
      last = rows[i].entry;
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const std::size_t g = group[i];
      const bool starts = i > 0 && group[i - 1] != g;
      gap.push_back(starts && (entries_in[g - 1] > 1 || entries_in[g] > 1 ||
                               group_transport[g - 1] != group_transport[g]));
    }
  }
  std::vector<std::size_t> w(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
  for (const auto& c : cells)
    for (std::size_t i = 0; i + 1 < c.size(); ++i) w[i] = std::max(w[i], c[i].size());
  // Text columns left-aligned, figures right-aligned; the last column is free.
  auto print_row = [&](const std::vector<std::string>& c) {
    std::string line;
    for (std::size_t i = 0; i < c.size(); ++i) {
      const bool right = i == 1 || (i >= 4 && i <= 8);
      const std::size_t pad = i + 1 < c.size() ? w[i] - std::min(w[i], c[i].size()) : 0;
      if (right) line += std::string(pad, ' ') + c[i];
      else line += c[i] + std::string(pad, ' ');
      if (i + 1 < c.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::fprintf(out, "%s\n", line.c_str());
  };
  print_row(head);
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (gap[i]) std::fprintf(out, "\n");
    print_row(cells[i]);
  }
  if (!notes.empty()) {
    std::fprintf(out, "\n");
    for (const std::string& n : notes) std::fprintf(out, "note: %s\n", n.c_str());
  }
  std::fflush(out);
}

// -------------------------------------------------------------------- JSON

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void write_json(const std::string& path, const Context& ctx, const std::vector<Row>& rows) {
  std::ostringstream js;
  js << "{\n  \"context\": {";
  for (std::size_t i = 0; i < ctx.size(); ++i)
    js << (i ? "," : "") << "\n    " << json_string(ctx[i].first) << ": " << ctx[i].second;
  js << "\n  },\n  \"results\": [";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const Entry& e = *r.entry;
    js << (i ? "," : "") << "\n    {\"workload\": " << json_string(e.workload)
       << ", \"transport\": " << json_string(e.transport) << ", \"size\": " << e.size
       << ", \"metric\": " << json_string(r.metric->name)
       << ", \"unit\": " << json_string(r.metric->unit)
       << ", \"higher_is_better\": " << (r.metric->is_rate ? "true" : "false");
    if (r.error.empty()) {
      js << ", \"median\": " << json_number(r.summary.median)
         << ", \"min\": " << json_number(r.summary.min)
         << ", \"max\": " << json_number(r.summary.max);
    } else {
      js << ", \"median\": null, \"min\": null, \"max\": null";
    }
    js << ", \"reps\": " << r.summary.values.size() << ", \"n\": " << r.n << ", \"values\": [";
    for (std::size_t k = 0; k < r.summary.values.size(); ++k)
      js << (k ? ", " : "") << json_number(r.summary.values[k]);
    js << "], \"floor\": " << (r.floor ? json_string(r.floor->name()) : "null")
       << ", \"ratio\": " << (r.ratio > 0 ? json_number(r.ratio) : "null");
    if (!r.error.empty()) js << ", \"error\": " << json_string(r.error);
    js << "}";
  }
  js << "\n  ]\n}\n";
  std::ofstream f(path, std::ios::out | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  f << js.str();
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

// -------------------------------------------------------------------- plot

bool gnuplot_available() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    const std::size_t colon = p.find(':', start);
    std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";
    const std::string exe = dir + "/gnuplot";
    struct stat st {};
    if (stat(exe.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(exe.c_str(), X_OK) == 0)
      return true;
    if (colon == std::string::npos) return false;
    start = colon + 1;
  }
}

namespace {

// gnuplot single-quoted string: only ' needs escaping, as ''.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// gnuplot's enhanced text mode treats _ ^ @ & { } as markup.
std::string gp_plain(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("_^@&{}~", c)) out += '\\';  // one backslash: single-quoted gp string
    out += c;
  }
  return out;
}

struct Point {
  std::size_t size;
  double median, min, max;
};
struct Series {
  std::string transport;
  bool floor;
  std::vector<Point> points;
};

std::vector<Series> collect(const std::vector<Row>& rows, const std::string& workload,
                            const std::string& unit) {
  std::vector<Series> out;
  for (const Row& r : rows) {
    if (!r.error.empty() || r.entry->workload != workload || r.metric->unit != unit ||
        r.entry->size == 0)
      continue;
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Series& s) { return s.transport == r.entry->transport; });
    if (it == out.end()) {
      out.push_back({r.entry->transport, r.entry->is_floor(), {}});
      it = out.end() - 1;
    }
    it->points.push_back({r.entry->size, r.summary.median, r.summary.min, r.summary.max});
  }
  for (Series& s : out)
    std::sort(s.points.begin(), s.points.end(),
              [](const Point& a, const Point& b) { return a.size < b.size; });
  return out;
}

void write_data(const std::string& path, const std::vector<Series>& series) {
  std::ofstream f(path);
  for (const Series& s : series) {
    f << "# " << s.transport << "\n";
    for (const Point& p : s.points)
      f << p.size << ' ' << json_number(p.median) << ' ' << json_number(p.min) << ' '
        << json_number(p.max) << '\n';
    f << "\n\n";  // next gnuplot index
  }
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string panel(const std::string& data, const std::vector<Series>& series,
                  const std::string& title, const std::string& ylabel, const std::string& key) {
  std::ostringstream gp;
  gp << "set title " << gp_quote(title) << "\n"
     << "set ylabel " << gp_quote(ylabel) << "\n"
     << "set key " << key << "\n";
  if (series.empty()) {
    gp << "unset logscale y\nset yrange [0:1]\nunset ytics\n"
       << "set label 1 'no results for this panel in this run' at graph 0.5,0.5 center\n"
       << "plot 2 notitle lc rgb 'white'\n"
       << "unset label 1\nset ytics\nset autoscale y\nset logscale y\n";
    return gp.str();
  }
  // 16 distinguishable colours; floors thin with open points, csp thick with
  // filled ones, shapes cycling so a repeated colour still differs.
  static const char* const kColours[] = {
      "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
      "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d"};
  static const int kOpen[] = {6, 4, 8, 10, 12, 14};
  static const int kFilled[] = {7, 5, 9, 11, 13, 15};
  gp << "plot ";
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const char* colour = kColours[i % 16];
    const int width = s.floor ? 1 : 2;
    const int point = s.floor ? kOpen[(i / 3) % 6] : kFilled[(i / 3) % 6];
    if (i) gp << ", \\\n     ";
    gp << gp_quote(data) << " index " << i << " using 1:2:3:4 with yerrorlines lc rgb '" << colour
       << "' lw " << width << " pt " << point << " ps 0.7 title " << gp_quote(gp_plain(s.transport));
  }
  gp << "\n";
  return gp.str();
}

int run_gnuplot(const std::string& script, const std::string& err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string prog = "gnuplot";
  char* argv[] = {prog.data(), const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "gnuplot", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("cannot start gnuplot: ") + std::strerror(rc));
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

void write_plot(const std::string& svg_path, const std::string& title, const std::vector<Row>& rows) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/csp-bench-plot.XXXXXX";
  if (!mkdtemp(dir.data())) throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
  const std::string lat = dir + "/latency.dat", thr = dir + "/throughput.dat",
                    script = dir + "/plot.gp", err = dir + "/gnuplot.err";
  auto cleanup = [&] {
    for (const std::string& f : {lat, thr, script, err}) ::unlink(f.c_str());
    ::rmdir(dir.c_str());
  };
  try {
    const auto lat_series = collect(rows, "pingpong", "ns/hop");
    const auto thr_series = collect(rows, "stream", "MB/s");
    write_data(lat, lat_series);
    write_data(thr, thr_series);
    std::vector<std::size_t> sizes;
    for (const auto* set : {&lat_series, &thr_series})
      for (const Series& s : *set)
        for (const Point& p : s.points) sizes.push_back(p.size);
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());

    std::ostringstream gp;
    gp << "set terminal svg size 1400,760 dynamic enhanced font 'sans,11' background rgb 'white'\n"
       << "set output " << gp_quote(svg_path) << "\n"
       << "set encoding utf8\n"
       << "set multiplot layout 1,2 title " << gp_quote(gp_plain(title)) << " font ',12'\n"
       << "set logscale xy\nset format y '%.0s%c'\nset grid xtics ytics mytics\nset bars small\n"
       << "set xlabel 'message size [bytes]'\n";
    if (!sizes.empty()) {
      gp << "set xrange [" << double(sizes.front()) / 1.6 << ":" << double(sizes.back()) * 1.6 << "]\n";
      gp << "set xtics (";
      for (std::size_t i = 0; i < sizes.size(); ++i)
        gp << (i ? ", " : "") << gp_quote(size_label(sizes[i])) << " " << sizes[i];
      gp << ")\n";
    } else {
      gp << "set xrange [4:2097152]\n";
    }
    gp << panel(lat, lat_series, "ping-pong latency, one hop (median; bars: min-max; open points: floors)",
                "ns per hop", "below font ',9' maxcols 4")
       << panel(thr, thr_series, "stream throughput (median; bars: min-max; open points: floors)",
                gp_plain("MB/s (MB = 10^6 bytes)"), "below font ',9' maxcols 4")
       << "unset multiplot\n";
    {
      std::ofstream f(script);
      f << gp.str();
      if (!f) throw std::runtime_error("cannot write " + script);
    }
    const int rc = run_gnuplot(script, err);
    if (rc != 0) {
      std::ifstream e(err);
      std::string msg((std::istreambuf_iterator<char>(e)), std::istreambuf_iterator<char>());
      throw std::runtime_error("gnuplot failed (status " + std::to_string(rc) + "): " + msg);
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

}  // namespace cspbench
