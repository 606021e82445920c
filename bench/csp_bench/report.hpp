// report.hpp: the outputs of csp-bench: the table (stdout), the JSON file and
// the gnuplot SVG.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "registry.hpp"

namespace cspbench {

/// One result row: one metric of one entry.
struct Row {
  const Entry* entry = nullptr;   ///< what ran
  const Metric* metric = nullptr; ///< which of its metrics
  Summary summary;                ///< median/min/max over the repetitions
  std::uint64_t n = 0;            ///< operations per repetition
  const Entry* floor = nullptr;   ///< the floor compared to, if any
  double ratio = -1;              ///< csp cost / floor cost on medians; < 0: none
  std::string error;              ///< non-empty when the entry failed
  bool group_start = false;       ///< first row of a floor group (table spacing)
};

/// Ratio of `row` to floor row `f`: time / floor time, or floor rate / rate.
double cost_ratio(const Metric& m, double median, double floor_median);

/// Key/value pairs describing the run (host, CPU, kernel, mode, ...); values
/// are already JSON (quoted strings or numbers).
using Context = std::vector<std::pair<std::string, std::string>>;

/// JSON string literal for s.
std::string json_string(const std::string& s);
/// JSON number, or null when not finite.
std::string json_number(double v);

/// Prints the table, then the notes.
void print_table(std::FILE* out, const std::vector<Row>& rows,
                 const std::vector<std::string>& notes);

/// Writes {"context":{...},"results":[...]}; throws std::runtime_error.
void write_json(const std::string& path, const Context& ctx, const std::vector<Row>& rows);

/// True when an executable `gnuplot` is on PATH.
bool gnuplot_available();

/// Writes a gnuplot script and data files to a temporary directory, runs
/// gnuplot to render `svg_path` (ping-pong latency and stream bandwidth
/// against message size, one line per transport; floors dashed), and removes
/// the directory. Throws std::runtime_error with gnuplot's message on failure.
void write_plot(const std::string& svg_path, const std::string& title, const std::vector<Row>& rows);

/// Human-readable figure: 3 significant digits, thousands separators, and
/// k/M/G for large rates.
std::string format_figure(double v);

}  // namespace cspbench
