// harness.hpp: calibrate n, run repetitions, summarise.
//
// Method (as the anchor baselines in shared/baselines): n starts at the
// entry's n0 and grows (x2 .. x100, aiming at 1.5x what is missing) until one
// run takes at least target/5; then n is scaled so one repetition takes about
// `target` seconds. The calibration runs double as warm-up. Then `reps`
// repetitions of n operations each; each repetition gives one figure per
// metric, summarised as median, min and max.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "registry.hpp"

namespace cspbench {

struct HarnessConfig {
  double target = 0.05;  ///< seconds per repetition
  int reps = 3;          ///< repetitions after calibration
};

/// The timings of one entry: n and the seconds of each repetition, or the
/// error that stopped it.
struct Measurement {
  std::uint64_t n = 0;
  std::vector<double> seconds;  ///< one per repetition
  std::string error;            ///< non-empty when the entry failed
};

/// Called before each calibration step and repetition: (phase, rep index).
/// phase is "calibrating" or "rep".
using ProgressFn = std::function<void(const char* phase, int rep)>;

/// Calibrates and runs `e`; never throws (a failure is in Measurement::error).
Measurement measure(const Entry& e, const HarnessConfig& cfg, const ProgressFn& progress);

/// Median, min and max of the figures of one metric over the repetitions.
struct Summary {
  double median = 0, min = 0, max = 0;
  std::vector<double> values;  ///< per repetition, in run order
};
Summary summarise(const Metric& m, const Measurement& meas);

}  // namespace cspbench
