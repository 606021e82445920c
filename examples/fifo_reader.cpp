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
// connect, each over its own pair of FIFOs.
//
// While hosted, the channel stays open for new writers (the hosting is a
// member of both sides). Like the seed's reader, which reads one writer's
// data until it closes, this one stops taking new writers after the first
// message (csp::unhost, which also removes the FIFO); once that writer
// closes its end, the writer side has retired and the loop ends.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s pipe:///PATH\n", argv[0]);
    return 2;
  }
  auto fifo = csp::Channel<std::string>::host(argv[1]);
  std::printf("reader: FIFO made, waiting for a writer at %s\n", argv[1]);
  std::fflush(stdout);
  bool first = true;
  for (const std::string& message : fifo.reader()) {
    if (first) csp::unhost(argv[1]);  // this writer only
    first = false;
    std::printf("reader: %s\n", message.c_str());
  }
  std::puts("reader: the writer closed its end");
}
