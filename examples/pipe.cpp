// pipe: the seeds' multiprocessing.Pipe, simplex and duplex, between OS
// processes.
//
// Python (seed 000 2.2, seed 001, seed 002):
//   parent_conn, child_conn = multiprocessing.Pipe()          # duplex
//   p1 = Process(target=sender,   args=(parent_conn,))  -> conn.send('Hello, receiver')
//   p2 = Process(target=receiver, args=(child_conn,))   -> print(conn.recv())
//   Pipe(duplex=False) -> (receive-only end, send-only end)
//
// A csp channel is one-way and typed, so:
// - simplex Pipe(duplex=False) is one channel, a Writer in one process and
//   a Reader in the other;
// - a duplex Pipe is two channels, one each way; each process gets the
//   writer of one and the reader of the other.
// Here the channels ride on pipe(2) (csp::transport::pipe, as the seed's
// Pipe does), chosen per channel; without it os_process ends use the
// shared-memory transport. Ends given to csp::os_process as arguments are
// connected across the fork; recv() after the other side closed raises
// EOFError in Python, ChannelRetired (ending a range-for) here.
#include <csp/csp.hpp>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

// --- simplex ---------------------------------------------------------------

void sender(csp::Writer<std::string> conn) { conn.write("Hello, receiver"); }

void receiver(csp::Reader<std::string> conn) {
  std::printf("receiver got: %s\n", conn.read().c_str());
  std::fflush(stdout);
}

// --- duplex ----------------------------------------------------------------

// [42, None, 'hello'] from the Python docs, as a typed value.
using Record = std::tuple<int, std::optional<int>, std::string>;

std::string show(const Record& r) {
  auto [n, maybe, text] = r;
  return "[" + std::to_string(n) + ", " + (maybe ? std::to_string(*maybe) : "None") + ", '" + text + "']";
}

// One end of a duplex pipe: send on `out`, receive on `in`.
void left(csp::Writer<Record> out, csp::Reader<std::string> in) {
  out.write({42, std::nullopt, "hello"});
  std::printf("left got reply: %s\n", in.read().c_str());
  std::fflush(stdout);
}

void right(csp::Reader<Record> in, csp::Writer<std::string> out) {
  Record r = in.read();
  std::printf("right got: %s\n", show(r).c_str());
  std::fflush(stdout);
  out.write("thanks for " + show(r));
}

int main() {
  std::puts("-- simplex: Pipe(duplex=False) is one channel --");
  std::fflush(stdout);
  csp::Channel<std::string> simplex{"simplex", csp::transport::pipe};
  csp::Parallel(csp::os_process(sender, simplex.writer()), csp::os_process(receiver, simplex.reader()));

  std::puts("-- duplex: Pipe() is two channels, one each way --");
  std::fflush(stdout);
  csp::Channel<Record> there{"left to right", csp::transport::pipe};
  csp::Channel<std::string> back{"right to left", csp::transport::pipe};
  csp::Parallel(csp::os_process(left, there.writer(), back.reader()),
                csp::os_process(right, there.reader(), back.writer()));

  std::puts("-- the parent reading what a child sends (seed 001, section 3) --");
  std::fflush(stdout);
  csp::Channel<std::string> from_child{"from child", csp::transport::pipe};
  auto [nothing, message] =
      csp::Parallel(csp::os_process([](csp::Writer<std::string> w) { w.write("hello from child process"); },
                                    from_child.writer()),
                    csp::process([](csp::Reader<std::string> r) { return r.read(); }, from_child.reader()));
  (void)nothing;
  std::printf("%s\n", message.c_str());
}
