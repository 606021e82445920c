// runtime_bench: the runtime's costs beside their floors, in one binary.
//
//   yield_hop      two processes yielding to each other on one worker,
//                  ns per switch; ratio to a raw boost::context::fiber
//                  resume ping-pong measured in the same run (target <= 2x)
//   spawn_join     Parallel of a batch of trivial processes, ns per process
//   parked_memory  resident bytes per parked process, 1,000,000 processes
//                  (target: all of them within 6 GiB)
//   farm           a CPU-bound farm on 2 workers vs 1, speed-up (target >= 1.8x)
//
// Ratios are computed inside each benchmark from a floor run right before,
// so the noise of a shared machine mostly cancels.
#include <benchmark/benchmark.h>

#include <boost/context/fiber.hpp>
#include <chrono>
#include <csp/csp.hpp>
#include <fstream>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Raw floor: ns per boost::context::fiber resume in a ping-pong.
double raw_fiber_switch_ns(long n) {
  namespace ctx = boost::context;
  ctx::fiber f{[n](ctx::fiber&& main) {
    for (long i = 0; i < n; ++i) main = std::move(main).resume();
    return std::move(main);
  }};
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) f = std::move(f).resume();
  double s = seconds_since(t0);
  f = std::move(f).resume();
  return s * 1e9 / (2.0 * static_cast<double>(n));
}

/// Runs the runtime with exactly `workers` workers for the benchmark.
void use_workers(unsigned workers) {
  if (csp::configuration().workers != workers || csp::detail::Clock::now() == csp::detail::Clock::time_point{}) {
    csp::shutdown();
    csp::Config c = csp::configuration();
    c.workers = workers;
    csp::configure(c);
  }
}

void yield_hop(benchmark::State& state) {
  use_workers(1);
  const long n = 200000;
  double ns = 0, raw = 0;
  for (auto _ : state) {
    raw = raw_fiber_switch_ns(n);
    auto body = [n] {
      for (long i = 0; i < n; ++i) csp::yield();
    };
    auto t0 = Clock::now();
    // Started by a process, so both are queued before either runs: started
    // from main, the first could make most of its yields before the second
    // is queued, and a yield with nobody else ready does not switch.
    csp::Parallel([&] { csp::Parallel(body, body); });
    ns = seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(n));
    state.SetIterationTime(ns * 1e-9);
  }
  state.counters["ns_per_switch"] = ns;
  state.counters["raw_fiber_ns"] = raw;
  state.counters["ratio"] = ns / raw;
}
BENCHMARK(yield_hop)->UseManualTime()->Iterations(5)->Unit(benchmark::kNanosecond);

void spawn_join(benchmark::State& state) {
  use_workers(static_cast<unsigned>(state.range(0)));
  const int batch = 10000;
  double ns = 0;
  for (auto _ : state) {
    std::vector<csp::Process<void>> procs;
    procs.reserve(batch);
    for (int i = 0; i < batch; ++i) procs.push_back(csp::process([] {}));
    auto t0 = Clock::now();
    csp::Parallel(std::move(procs));
    ns = seconds_since(t0) * 1e9 / batch;
    state.SetIterationTime(ns * 1e-9);
  }
  state.counters["ns_per_process"] = ns;
}
BENCHMARK(spawn_join)->Arg(1)->Arg(2)->UseManualTime()->Iterations(10)->Unit(benchmark::kNanosecond);

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

void parked_memory(benchmark::State& state) {
  use_workers(2);
  const long n = state.range(0);
  double per_process = 0;
  for (auto _ : state) {
    csp::Channel<int> never{"never"};
    std::atomic<long> parked{0};
    long before = resident_bytes();
    auto t0 = Clock::now();
    csp::Parallel(
        [&] {
          // Spawn n processes that each block on a read, then measure.
          for (long i = 0; i < n; ++i)
            csp::Spawn(csp::process(
                [&parked](csp::Reader<int> r) {
                  ++parked;
                  try {
                    r.read();
                  } catch (const csp::ChannelPoisoned&) {
                  }
                },
                never.reader()));
          while (parked.load() < n) csp::yield();
          long after = resident_bytes();
          per_process = static_cast<double>(after - before) / static_cast<double>(n);
          never.poison();
        });
    state.SetIterationTime(seconds_since(t0));
  }
  state.counters["bytes_per_process"] = per_process;
  state.counters["GiB_total"] = per_process * static_cast<double>(n) / (1024.0 * 1024 * 1024);
}
BENCHMARK(parked_memory)->Arg(1000000)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

double farm_seconds(unsigned workers) {
  use_workers(workers);
  auto t0 = Clock::now();
  std::vector<csp::Process<double>> farm;
  for (int i = 0; i < 64; ++i)
    farm.push_back(csp::process([i] {
      double x = i;
      for (int k = 0; k < 2000000; ++k) x = x * 0.999999 + 1.0;
      return x;
    }));
  auto results = csp::Parallel(std::move(farm));
  benchmark::DoNotOptimize(results);
  return seconds_since(t0);
}

void farm(benchmark::State& state) {
  double one = 0, two = 0;
  for (auto _ : state) {
    one = farm_seconds(1);
    two = farm_seconds(2);
    state.SetIterationTime(two);
  }
  state.counters["s_1_worker"] = one;
  state.counters["s_2_workers"] = two;
  state.counters["speedup"] = one / two;
}
BENCHMARK(farm)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
