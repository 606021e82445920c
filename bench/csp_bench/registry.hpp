// registry.hpp: what csp-bench can run. An Entry is one workload over one
// transport at one message size, with the function that runs it and the floor
// it is compared to; a Registry holds them in registration order.
//
// Registration order is run order: csp-bench runs each floor, then every
// selected entry that compares to it, so a ratio compares two figures taken a
// moment apart (see README.md, "Reading the ratios").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cspbench {

/// Turns (seconds, n) of one repetition into the reported figure.
struct Metric {
  std::string name;  ///< "latency", "throughput", "bandwidth", "time per switch", ...
  std::string unit;  ///< "ns/hop", "msg/s", "MB/s", ... (MB = 10^6 bytes)
  double scale;      ///< figure = is_rate ? scale * n / secs : scale * secs / n
  bool is_rate;      ///< true: higher is better (a rate); false: a time per operation

  double operator()(double secs, std::uint64_t n) const;
};

/// Time per hop from n round trips (RTT / 2), in ns.
Metric ns_per_hop();
/// Time per context switch from n resume round trips (2 switches each), in ns.
Metric ns_per_switch();
/// Time per communication from n commstime loops (4 communications each), in ns.
Metric ns_per_comm();
/// Mean one-way latency to a parked reader, in ns, from the summed
/// latencies of n wake-ups (the run returns that sum, not wall time).
Metric ns_per_wake();
/// Messages per second from n messages.
Metric msg_per_s();
/// Megabytes (10^6 bytes) per second from n messages of `size` bytes.
Metric mb_per_s(std::size_t size);
/// {msg_per_s(), mb_per_s(size)}: what every stream entry reports.
std::vector<Metric> stream_metrics(std::size_t size);

/// The floor an entry is compared to: the entry of transport `transport` and
/// workload `workload` (empty: the same workload) at message size `size`
/// (unset: the entry's own size), or at size 0 when the floor does not
/// depend on size.
struct FloorRef {
  std::string transport{};  ///< e.g. "floor:shm-ring"; empty: this entry is not compared
  std::string workload{};   ///< e.g. "switch" for commstime; empty: same workload
  std::optional<std::size_t> size{};  ///< e.g. 8 for commstime over pipe; unset: the entry's size
};

/// One benchmark: `run(n)` performs n operations and returns the seconds of
/// its timed part only (setup excluded). It throws on failure.
struct Entry {
  std::string workload{};   ///< "commstime", "pingpong", "stream", or a floor's own ("switch")
  std::string transport{};  ///< "inproc-1w", "inproc-Nw", "thread", "shm", "pipe", "unix",
                          ///< "tcp", or a floor: "floor:fiber", "floor:shm-ring", ...
  std::size_t size = 0;   ///< message bytes; 0 when the workload has no message size
  std::vector<Metric> metrics{};///< one result row each; the first is the headline
  FloorRef floor{};             ///< what the ratio is taken against
  std::function<double(std::uint64_t n)> run{};///< the benchmark
  std::uint64_t n0 = 1;         ///< first n tried by the calibration
  std::string note{};           ///< shown by --list (what exactly is measured)

  /// "workload/transport[/size]", e.g. "stream/shm/64K": what --filter matches.
  std::string name() const;
  /// True for a floor (transport starts with "floor:").
  bool is_floor() const;
};

/// Formats a size the way --sizes takes it: 8, 512, 4K, 64K, 1M.
std::string size_label(std::size_t size);

/// The set of entries csp-bench knows, for the sizes of this run.
class Registry {
 public:
  explicit Registry(std::vector<std::size_t> sizes) : sizes_(std::move(sizes)) {}

  /// Message sizes of this run; register sized entries once for each.
  const std::vector<std::size_t>& sizes() const { return sizes_; }

  /// Adds an entry (run order = registration order among floors; a non-floor
  /// entry runs right after its floor). Names must be unique.
  void add(Entry e);

  /// Records a line for the report, e.g. why some workloads are left out.
  void note(std::string text) { notes_.push_back(std::move(text)); }

  const std::vector<Entry>& entries() const { return entries_; }
  const std::vector<std::string>& notes() const { return notes_; }

  /// The floor entry `e` compares to, or nullptr.
  const Entry* floor_of(const Entry& e) const;

 private:
  std::vector<std::size_t> sizes_;   // message sizes of this run, ascending
  std::vector<Entry> entries_;       // in registration order
  std::vector<std::string> notes_;   // shown under the table and in the JSON context
};

/// Registers the raw floors (floors.hpp). Defined in floor_workloads.cpp.
void register_floor_workloads(Registry& reg);
/// Registers the csp workloads, when csp-bench is built with csp. Defined in
/// csp_workloads.cpp.
void register_csp_workloads(Registry& reg);

}  // namespace cspbench
