// channels_bench: in-process channels beside the raw floor, in one binary.
//
//   commstime/W     the classic Prefix -> Delta -> {Succ -> Prefix, Consume}
//                   ring on W workers, ns per communication (4 per loop);
//                   targets: <= 30 ns on 1 worker, below Go's 245 ns on 2
//   pingpong        unbuffered one-way hop between two processes on one
//                   worker; target <= 2x the raw fiber switch
//   stream64        a 64-slot buffered channel of int, values/s on one
//                   worker; target >= 60 M/s
//   alt/G           a process selecting (AltSelect) over G input guards fed
//                   by G writers, ns per selection
// Every benchmark measures a raw boost::context::fiber switch right before
// itself and reports ratio = csp / raw (ratios cancel the machine's noise).
#include <benchmark/benchmark.h>

#include <boost/context/fiber.hpp>
#include <chrono>
#include <csp/csp.hpp>

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

void use_workers(unsigned workers) {
  if (csp::configuration().workers != workers) {
    csp::shutdown();
    csp::Config c = csp::configuration();
    c.workers = workers;
    csp::configure(c);
  }
}

void report(benchmark::State& state, double value, double raw, const char* unit) {
  state.counters[unit] = value;
  state.counters["raw_fiber_ns"] = raw;
  state.counters["ratio"] = value / raw;
}

double commstime_ns(long n) {
  csp::Channel<long> a{"a"}, b{"b"}, c{"c"}, d{"d"};
  double ns = 0;
  auto prefix = [](csp::Reader<long> in, csp::Writer<long> out) {
    out.write(0);
    for (;;) out.write(in.read());
  };
  auto delta = [](csp::Reader<long> in, csp::Writer<long> out1, csp::Writer<long> out2) {
    for (;;) {
      long v = in.read();
      out1.write(v);
      out2.write(v);
    }
  };
  auto succ = [](csp::Reader<long> in, csp::Writer<long> out) {
    for (;;) out.write(in.read() + 1);
  };
  auto consume = [&ns, n](csp::Reader<long> in) {
    for (int i = 0; i < 1000; ++i) in.read();  // warm-up
    auto t0 = Clock::now();
    for (long i = 0; i < n; ++i) in.read();
    ns = seconds_since(t0) * 1e9 / (4.0 * static_cast<double>(n));
    in.poison();  // shuts the ring down
  };
  csp::Parallel(csp::process(prefix, +c, -a), csp::process(delta, +a, -b, -d), csp::process(succ, +d, -c),
                csp::process(consume, +b));
  return ns;
}

void commstime(benchmark::State& state) {
  use_workers(static_cast<unsigned>(state.range(0)));
  double ns = 0, raw = 0;
  for (auto _ : state) {
    raw = raw_fiber_switch_ns(500000);
    ns = commstime_ns(200000);
    state.SetIterationTime(ns * 1e-9);
  }
  report(state, ns, raw, "ns_per_comm");
}
BENCHMARK(commstime)->Arg(1)->Arg(2)->UseManualTime()->Iterations(5)->Unit(benchmark::kNanosecond);

void pingpong(benchmark::State& state) {
  use_workers(1);
  const long n = 200000;
  double ns = 0, raw = 0;
  for (auto _ : state) {
    raw = raw_fiber_switch_ns(500000);
    csp::Channel<long> ping, pong;
    csp::Parallel(
        csp::process(
            [&](csp::Writer<long> out, csp::Reader<long> in) {
              auto t0 = Clock::now();
              for (long i = 0; i < n; ++i) {
                out.write(i);
                if (in.read() != i) throw std::logic_error("pingpong: wrong value");
              }
              ns = seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(n));
              out.poison();
            },
            -ping, +pong),
        csp::process(
            [](csp::Reader<long> in, csp::Writer<long> out) {
              for (;;) out.write(in.read());
            },
            +ping, -pong));
    state.SetIterationTime(ns * 1e-9);
  }
  report(state, ns, raw, "ns_per_hop");
}
BENCHMARK(pingpong)->UseManualTime()->Iterations(5)->Unit(benchmark::kNanosecond);

void stream64(benchmark::State& state) {
  use_workers(1);
  const long n = 2000000;
  double rate = 0, raw = 0;
  for (auto _ : state) {
    raw = raw_fiber_switch_ns(500000);
    csp::Channel<int> ch{csp::buffer(64)};
    double seconds = 0;
    csp::Parallel(csp::process(
                      [n](csp::Writer<int> out) {
                        for (long i = 0; i < n; ++i) out.write(static_cast<int>(i));
                      },
                      -ch),
                  csp::process(
                      [&](csp::Reader<int> in) {
                        auto t0 = Clock::now();
                        long sum = 0;
                        for (long i = 0; i < n; ++i) sum += in.read();
                        seconds = seconds_since(t0);
                        benchmark::DoNotOptimize(sum);
                      },
                      +ch));
    rate = static_cast<double>(n) / seconds;
    state.SetIterationTime(seconds);
  }
  state.counters["values_per_s"] = rate;
  state.counters["ns_per_value"] = 1e9 / rate;
  state.counters["raw_fiber_ns"] = raw;
  state.counters["ratio"] = (1e9 / rate) / raw;
}
BENCHMARK(stream64)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);

void alt(benchmark::State& state) {
  use_workers(1);
  const int guards = static_cast<int>(state.range(0));
  const long n = 100000;
  double ns = 0, raw = 0;
  for (auto _ : state) {
    raw = raw_fiber_switch_ns(500000);
    std::vector<csp::Channel<int>> chans(static_cast<std::size_t>(guards));
    std::vector<csp::Process<void>> writers;
    for (auto& ch : chans)
      writers.push_back(csp::process(
          [](csp::Writer<int> out) {
            for (int i = 0;; ++i) out.write(i);
          },
          ch.writer()));
    std::vector<csp::Reader<int>> readers;
    for (auto& ch : chans) readers.push_back(ch.reader());
    csp::Parallel(csp::process(
                      [&](std::vector<csp::Reader<int>> ins) {
                        csp::Alternation alternation = [&] {
                          if (ins.size() == 2) return csp::Alternation(csp::input(ins[0]), csp::input(ins[1]));
                          return csp::Alternation(csp::input(ins[0]), csp::input(ins[1]), csp::input(ins[2]),
                                                  csp::input(ins[3]), csp::input(ins[4]), csp::input(ins[5]),
                                                  csp::input(ins[6]), csp::input(ins[7]));
                        }();
                        auto t0 = Clock::now();
                        for (long i = 0; i < n; ++i) alternation.select();
                        ns = seconds_since(t0) * 1e9 / static_cast<double>(n);
                        ins[0].poison();
                        for (auto& in : ins) in.poison();
                      },
                      std::move(readers)),
                  std::move(writers));
    state.SetIterationTime(ns * 1e-9);
  }
  report(state, ns, raw, "ns_per_select");
}
BENCHMARK(alt)->Arg(2)->Arg(8)->UseManualTime()->Iterations(3)->Unit(benchmark::kNanosecond);

}  // namespace
