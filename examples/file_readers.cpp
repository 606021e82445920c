// file_readers: the seeds' "file" mechanism, two OS processes reading one
// file.
//
// Python (seed 000, 2.5):
//   with open('test.txt', 'w') as f: f.write('Line 1\n'); ...
//   processes = [Process(target=worker, args=(filename,)) for _ in range(2)]
//   def worker(file): for line in open(file): print(line.rstrip())
//
// A file is shared state with no synchronisation: fine for readers of a
// file nobody writes any more, which is the seed's case. Each child reads
// on its own; instead of printing straight to the terminal (where the two
// children's lines interleave unpredictably) each sends its lines to the
// parent over a channel, and the parent prints them per reader.
// File reads block in the kernel, so a reader that should not stall other
// coroutines of its OS process runs as a csp::thread_process (PyCSP's
// @io); each os_process child here has nothing else to run, so it just reads.
#include <unistd.h>

#include <csp/csp.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

using Line = std::pair<int, std::string>;  // (reader, line)

void reader(int id, std::string filename, csp::Writer<Line> out) {
  std::ifstream file(filename);
  for (std::string line; std::getline(file, line);) out.write({id, line});
}

int main() {
  const std::string filename = "/tmp/csp_file_readers_" + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream f(filename);
    f << "Line 1\nLine 2\nLine 3\n";
  }

  csp::Channel<Line> lines{"lines"};
  std::map<int, std::vector<std::string>> got;
  csp::Parallel(csp::os_process(reader, 0, filename, lines.writer()), csp::os_process(reader, 1, filename, lines.writer()),
                csp::process(
                    [&got](csp::Reader<Line> in) {
                      for (auto [id, line] : in) got[id].push_back(line);  // until both readers are done
                    },
                    lines.reader()));
  std::remove(filename.c_str());

  for (auto& [id, text] : got) {
    std::printf("reader %d read:\n", id);
    for (auto& line : text) std::printf("  %s\n", line.c_str());
  }
}
