// registry.cpp: metrics, entry names, and the registry's floor lookup.
#include "registry.hpp"

#include <stdexcept>

namespace cspbench {

double Metric::operator()(double secs, std::uint64_t n) const {
  if (secs <= 0 || n == 0) return 0;
  return is_rate ? scale * double(n) / secs : scale * secs / double(n);
}

Metric ns_per_hop() { return {"latency", "ns/hop", 1e9 / 2, false}; }
Metric ns_per_switch() { return {"time per switch", "ns/switch", 1e9 / 2, false}; }
Metric ns_per_comm() { return {"time per communication", "ns/comm", 1e9 / 4, false}; }
Metric ns_per_wake() { return {"wake-up latency", "ns/wake", 1e9, false}; }
Metric msg_per_s() { return {"throughput", "msg/s", 1.0, true}; }
Metric mb_per_s(std::size_t size) { return {"bandwidth", "MB/s", double(size) / 1e6, true}; }
std::vector<Metric> stream_metrics(std::size_t size) { return {msg_per_s(), mb_per_s(size)}; }

std::string size_label(std::size_t size) {
  if (size >= (1u << 20) && size % (1u << 20) == 0) return std::to_string(size >> 20) + "M";
  if (size >= (1u << 10) && size % (1u << 10) == 0) return std::to_string(size >> 10) + "K";
  return std::to_string(size);
}

std::string Entry::name() const {
  std::string s = workload + "/" + transport;
  if (size) s += "/" + size_label(size);
  return s;
}

bool Entry::is_floor() const { return transport.rfind("floor:", 0) == 0; }

void Registry::add(Entry e) {
  for (const Entry& x : entries_)
    if (x.name() == e.name()) throw std::logic_error("csp-bench: duplicate entry " + e.name());
  if (!e.run) throw std::logic_error("csp-bench: entry " + e.name() + " has no run function");
  if (e.metrics.empty()) throw std::logic_error("csp-bench: entry " + e.name() + " has no metric");
  entries_.push_back(std::move(e));
}

const Entry* Registry::floor_of(const Entry& e) const {
  if (e.floor.transport.empty()) return nullptr;
  const std::string& wl = e.floor.workload.empty() ? e.workload : e.floor.workload;
  const std::size_t size = e.floor.size.value_or(e.size);
  const Entry* sizeless = nullptr;
  for (const Entry& f : entries_) {
    if (f.transport != e.floor.transport || f.workload != wl) continue;
    if (f.size == size) return &f;
    if (f.size == 0) sizeless = &f;
  }
  return sizeless;
}

}  // namespace cspbench
