// fifo_writer: writes to the FIFO fifo_reader serves; see fifo_reader.cpp.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s pipe:///PATH\n", argv[0]);
    return 2;
  }
  auto fifo = csp::Channel<std::string>::connect(argv[1]);  // retries until the reader has made it
  auto out = fifo.writer();
  out.write("Hello, receiver!");
  out.write("A second message, kept apart from the first");
  std::puts("writer: sent 2 messages");
}  // `out` goes: the writer side retires and the reader's loop ends
