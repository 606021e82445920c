// commstime: the classic CSP benchmark (occam's COMMSTIME, also in JCSP and
// PyCSP). Four processes in a loop:
//
//        +--------+   a   +-------+   b   +---------+
//        | Prefix |------>| Delta |------>| Consume |
//        |  (0)   |       |       |       +---------+
//        +--------+       +-------+
//            ^                | c
//            |   d   +------+ |
//            +-------| Succ |<+
//                    +------+
//
// Prefix outputs 0, then copies d to a; Delta copies a to both b and c;
// Succ adds one. Consume reads the numbers 0, 1, 2, ... Each number costs
// four channel communications; the time per communication is the figure
// of merit. Consume checks it got every number in order, then poisons its
// channel: the poison spreads round the loop and every process ends.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>

constexpr long kNumbers = 100000;

void prefix(long first, csp::Reader<long> in, csp::Writer<long> out) {
  out.write(first);
  for (;;) out.write(in.read());
}

void delta(csp::Reader<long> in, csp::Writer<long> out1, csp::Writer<long> out2) {
  for (;;) {
    long v = in.read();
    out1.write(v);  // occam does these two in PAR; sequentially is the
    out2.write(v);  // common "sequential delta" variant
  }
}

void succ(csp::Reader<long> in, csp::Writer<long> out) {
  for (;;) out.write(in.read() + 1);
}

long consume(csp::Reader<long> in) {
  long in_order = 0;
  for (long i = 0; i < kNumbers; ++i)
    if (in.read() == i) ++in_order;
  in.poison();  // ends the loop: every process's next operation throws ChannelPoisoned
  return in_order;
}

int main() {
  csp::Channel<long> a{"a"}, b{"b"}, c{"c"}, d{"d"};
  auto start = std::chrono::steady_clock::now();
  auto results = csp::Parallel(csp::process(prefix, 0L, d.reader(), a.writer()),
                               csp::process(delta, a.reader(), b.writer(), c.writer()),
                               csp::process(succ, c.reader(), d.writer()), csp::process(consume, b.reader()));
  auto took = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  long in_order = std::get<3>(results);
  std::printf("consume received %ld of %ld numbers in order\n", in_order, kNumbers);
  std::printf("poison ended all four processes\n");
  std::printf("commstime: %.0f ns per communication on %u workers\n", took / (4.0 * kNumbers),
               csp::worker_count());
}
