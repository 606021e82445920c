// harness.cpp: calibration, repetitions, median/min/max.
#include "harness.hpp"

#include <algorithm>
#include <exception>

namespace cspbench {

Measurement measure(const Entry& e, const HarnessConfig& cfg, const ProgressFn& progress) {
  Measurement m;
  try {
    std::uint64_t n = std::max<std::uint64_t>(e.n0, 1);
    progress("calibrating", 0);
    double t = e.run(n);
    // Grow n until one run is long enough to scale from; cap each step so a
    // noisy fast first run cannot make the next one take minutes.
    while (t < cfg.target / 5) {
      double grow = t > 0 ? (cfg.target / 5) / t * 1.5 : 100.0;
      grow = std::clamp(grow, 2.0, 100.0);
      n = std::uint64_t(double(n) * grow);
      progress("calibrating", 0);
      t = e.run(n);
    }
    if (t < cfg.target) n = std::uint64_t(double(n) * cfg.target / t) + 1;
    m.n = n;
    for (int r = 0; r < cfg.reps; ++r) {
      progress("rep", r + 1);
      m.seconds.push_back(e.run(n));
    }
  } catch (const std::exception& ex) {
    m.error = ex.what();
  } catch (...) {
    m.error = "unknown exception";
  }
  return m;
}

Summary summarise(const Metric& metric, const Measurement& meas) {
  Summary s;
  for (double secs : meas.seconds) s.values.push_back(metric(secs, meas.n));
  if (s.values.empty()) return s;
  std::vector<double> v = s.values;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  const std::size_t k = v.size();
  s.median = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
  return s;
}

}  // namespace cspbench
