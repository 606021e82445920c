// fifo_reader: the seeds' named pipe (os.mkfifo) between two unrelated
// programs. This one makes the FIFO and reads; fifo_writer writes:
//
//   fifo_reader pipe:///tmp/fifo_test &
//   fifo_writer pipe:///tmp/fifo_test
//
// Python (seed 003):
//   os.mkfifo(fifo_path)
//   sender:   with open(fifo_path, 'w') as f: f.write('Hello, receiver!')
//   receiver: with open(fifo_path, 'r') as f: print(f.read())
//
// csp: Channel<T>::host("pipe:///PATH") makes the FIFO and serves a channel
// over it; Channel<T>::connect joins it from any program on the host. The
// FIFO carries typed, whole messages (f.read() on a raw FIFO returns
// whatever bytes happen to be there), and any number of writers can
// connect, each over its own pair of FIFOs. The FIFO is removed when the
// program ends.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s pipe:///PATH\n", argv[0]);
    return 2;
  }
  auto fifo = csp::Channel<std::string>::host(argv[1]);
  std::puts("reader: FIFO made, waiting for a writer");
  std::fflush(stdout);
  for (const std::string& message : fifo.reader()) std::printf("reader: %s\n", message.c_str());
  std::puts("reader: the writer closed its end");
}
