// run_info.cpp: /proc readers for the report's context.
#include "run_info.hpp"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

namespace cspbench {

CpuSample sample_cpu() {
  CpuSample s;
  s.wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  const double hz = double(sysconf(_SC_CLK_TCK));
  std::ifstream stat("/proc/stat");
  std::string cpu;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  double f[10] = {};
  if (stat >> cpu && cpu == "cpu") {
    for (double& x : f) stat >> x;
    s.busy_s = (f[0] + f[1] + f[2] + f[5] + f[6]) / hz;
    s.steal_s = f[7] / hz;
    s.total_s = (f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7]) / hz;
  }
  rusage self{}, kids{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  auto secs = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  s.own_s = secs(self.ru_utime) + secs(self.ru_stime) + secs(kids.ru_utime) + secs(kids.ru_stime);
  std::ifstream la("/proc/loadavg");
  std::string a, b, c;
  if (la >> a >> b >> c) s.loadavg = a + " " + b + " " + c;
  return s;
}

double steal_percent(const CpuSample& a, const CpuSample& b) {
  const double total = b.total_s - a.total_s;
  return total > 0 ? (b.steal_s - a.steal_s) / total * 100 : 0;
}

double others_cpu_seconds(const CpuSample& a, const CpuSample& b) {
  const double v = (b.busy_s - a.busy_s) - (b.own_s - a.own_s);
  return v > 0 ? v : 0;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "?";
}

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "?";
  return u.release;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace cspbench
