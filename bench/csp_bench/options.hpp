// options.hpp: csp-bench's command line.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace cspbench {

/// A bad command line; main() prints "csp-bench: <what>" and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  bool full = false;                     ///< --full (default: --quick)
  std::vector<std::string> filters;      ///< --filter: substrings of entry names, any may match
  std::vector<std::string> transports;   ///< --transport: exact transport names
  std::vector<std::size_t> sizes;        ///< --sizes; empty: the mode's default sizes
  std::string json_path;                 ///< --json FILE
  std::string plot_path;                 ///< --plot FILE.svg
  int reps = 0;                          ///< --reps; 0: the mode's default
  double target = 0;                     ///< --target seconds; 0: the mode's default
  bool list = false;                     ///< --list: print the selected entries, run nothing
  bool help = false;                     ///< --help
};

/// Parses argv; throws UsageError with a message that names the culprit.
Options parse_options(int argc, char** argv);

/// Parses "8,64,4K,64K,1M" (K = 1024, M = 1024^2; optional trailing B,
/// e.g. 4KB or 4KiB); sizes from 8 B to 64 MiB, returned sorted, unique.
std::vector<std::size_t> parse_sizes(const std::string& list);

/// Default sizes, repetitions and seconds per repetition of each mode.
std::vector<std::size_t> default_sizes(bool full);
int default_reps(bool full);
double default_target(bool full);

/// The --help text.
std::string usage_text();

}  // namespace cspbench
