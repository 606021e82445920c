// run_info.hpp: what the machine was doing around a run, for the report's
// context: host, CPU, kernel, load, hypervisor steal, and the CPU time other
// processes used (a contention check: on an idle 2-vCPU VM that is about
// 1 CPU-second per 100 s).
#pragma once

#include <string>

namespace cspbench {

/// A snapshot of /proc/stat, /proc/loadavg and this process's CPU time.
struct CpuSample {
  double wall = 0;          ///< steady clock, seconds
  double busy_s = 0;        ///< all CPUs: user+nice+system+irq+softirq, seconds
  double steal_s = 0;       ///< all CPUs: steal, seconds
  double total_s = 0;       ///< all CPUs: every field, seconds
  double own_s = 0;         ///< this process + its reaped children, user+system, seconds
  std::string loadavg;      ///< first three fields of /proc/loadavg
};
CpuSample sample_cpu();

/// Percent of CPU time the hypervisor stole between two samples.
double steal_percent(const CpuSample& a, const CpuSample& b);
/// CPU-seconds used between two samples by processes other than this one and
/// its children.
double others_cpu_seconds(const CpuSample& a, const CpuSample& b);

std::string host_name();
std::string cpu_model();   ///< "model name" of /proc/cpuinfo
std::string kernel_release();
std::string utc_now();     ///< "2026-11-21T21:28:00Z"

}  // namespace cspbench
