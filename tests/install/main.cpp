// A consumer of the installed csp package: two processes and a channel.
// .ci/run checks for the line this prints.
#include <csp/csp.hpp>

#include <cstdio>

int main() {
  csp::Channel<int> numbers{"numbers"};
  auto producer = [](csp::Writer<int> out) {
    for (int i = 1; i <= 100; ++i) out.write(i);
  };  // `out` is destroyed here: the writer side retires, ending the reader's loop
  auto consumer = [](csp::Reader<int> in) {
    long sum = 0;
    for (int v : in) sum += v;
    return sum;
  };
  auto [done, sum] = csp::Parallel(csp::process(producer, numbers.writer()),
                                   csp::process(consumer, numbers.reader()));
  (void)done;
  std::printf("csp install test: sum of 1..100 over a channel = %ld\n", sum);
  return sum == 5050 ? 0 : 1;
}
