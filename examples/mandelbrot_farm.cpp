// mandelbrot_farm: a processor farm over OS processes.
//
//                  +--> worker 0 --results 0--+
//   farmer --rows--+--> worker 1 --results 1--+--> gatherer (alternation)
//                  +--> worker 2 --results 2--+
//                  +--> worker 3 --results 3--+
//
// The farmer hands out row numbers on one any-to-any channel; four
// os_process workers take rows as they become free (so a slow row does not
// hold up the others), compute them, and send each back on their own
// channel. The gatherer waits on all four result channels at once with a
// csp::Alternation (fair_select, so no worker is starved) and puts the rows
// in place. Shutdown is by retiring: the farmer retires after the last
// row, each worker's loop ends and its result channel retires when it
// returns; once every result channel has retired the alternation throws
// ChannelRetired and the gatherer is done.
#include <algorithm>
#include <array>
#include <complex>
#include <csp/csp.hpp>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

constexpr int kWidth = 72, kHeight = 25, kWorkers = 4, kMaxIter = 100;

using Row = std::pair<int, std::string>;  // (row number, its characters)

std::string compute_row(int y) {
  std::string line;
  for (int x = 0; x < kWidth; ++x) {
    std::complex<double> c(-2.2 + 3.0 * x / kWidth, -1.2 + 2.4 * y / (kHeight - 1)), z = 0;
    int n = 0;
    while (n < kMaxIter && std::norm(z) <= 4.0) {
      z = z * z + c;
      ++n;
    }
    static constexpr char kShades[] = " .:-=+*%@";  // slow escape = darker
    line += n == kMaxIter ? '#' : kShades[std::min(8, n / 2)];
  }
  return line;
}

void worker(csp::Reader<int> rows, csp::Writer<Row> results) {
  for (int y : rows) results.write({y, compute_row(y)});  // until the farmer retires
}

int main() {
  csp::Channel<int> rows{"rows"};
  std::array<csp::Channel<Row>, kWorkers> results;
  std::vector<std::string> picture(kHeight);
  std::array<int, kWorkers> done_by{};

  std::vector<csp::Process<void>> workers;
  for (int w = 0; w < kWorkers; ++w)
    workers.push_back(csp::os_process(worker, rows.reader(), results[w].writer()).named("worker " + std::to_string(w)));

  csp::Parallel(
      csp::process(
          [](csp::Writer<int> out) {
            for (int y = 0; y < kHeight; ++y) out.write(y);
            out.retire();
          },
          rows.writer()),
      std::move(workers),
      csp::process(
          [&](csp::Reader<Row> r0, csp::Reader<Row> r1, csp::Reader<Row> r2, csp::Reader<Row> r3) {
            csp::Alternation alt{csp::input(r0), csp::input(r1), csp::input(r2), csp::input(r3)};
            try {
              for (;;) {
                csp::Selected s = alt.fair_select();
                auto& [y, line] = s.value<Row>();
                picture[y] = line;
                ++done_by[s.index];
              }
            } catch (const csp::ChannelRetired&) {  // every worker has finished
            }
          },
          results[0].reader(), results[1].reader(), results[2].reader(), results[3].reader()));

  for (const auto& line : picture) std::printf("%s\n", line.c_str());
  int total = 0;
  for (int n : done_by) total += n;
  std::printf("%d rows computed by %d worker processes\n", total, kWorkers);
  std::fprintf(stderr, "rows per worker: %d %d %d %d\n", done_by[0], done_by[1], done_by[2], done_by[3]);
}
