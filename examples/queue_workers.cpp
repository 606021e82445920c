// queue_workers: the seeds' multiprocessing.Queue with four workers.
//
// Python (seed 000, 2.3):
//   q = multiprocessing.Queue()
//   processes = [Process(target=worker, args=(q,)) for _ in range(4)]
//   for i in range(10): q.put(i)
//   for _ in range(len(processes)): q.put(None)     # one sentinel per worker
//
// In csp the queue is a buffered any-to-any channel. Instead of counting
// out None sentinels (one per worker, and a worker that dies early makes
// the count wrong) the producer *retires* its writer end: once every
// writer has left and the buffer is drained, every reader's loop ends by
// itself, however many readers there are.
//
// The workers are OS processes, as in the seed: csp::os_process forks each
// one and connects the channel ends it is given to their channels here.
// Write csp::process instead and the same workers run as coroutines.
#include <algorithm>
#include <csp/csp.hpp>
#include <cstdio>
#include <string>
#include <vector>

// Takes items until the producer retires, and reports each to the printer.
void worker(int id, csp::Reader<int> jobs, csp::Writer<std::string> log) {
  for (int item : jobs)  // ends when the writer side has retired
    log.write("worker " + std::to_string(id) + " got " + std::to_string(item));
}

int main() {
  csp::Channel<int> jobs{"jobs", csp::buffer(16)};
  csp::Channel<std::string> log{"log"};

  std::vector<csp::Process<void>> workers;
  for (int id = 0; id < 4; ++id) workers.push_back(csp::os_process(worker, id, jobs.reader(), log.writer()));

  std::vector<std::string> lines;
  csp::Parallel(
      // The producer: ten items, then it retires (no sentinels).
      csp::process(
          [](csp::Writer<int> out) {
            for (int i = 0; i < 10; ++i) out.write(i);
            out.retire();
          },
          jobs.writer()),
      std::move(workers),
      // The printer: reads until all four workers have finished (and so
      // left the log channel's writer side).
      csp::process(
          [&lines](csp::Reader<std::string> in) {
            for (std::string line : in) lines.push_back(line);
          },
          log.reader()));

  // Which worker got which item varies from run to run; the items do not.
  std::vector<int> items;
  for (const auto& line : lines) items.push_back(std::stoi(line.substr(line.rfind(' ') + 1)));
  std::sort(items.begin(), items.end());
  std::printf("%zu items processed:", items.size());
  for (int i : items) std::printf(" %d", i);
  std::printf("\nall 4 workers stopped when the producer retired\n");
}
