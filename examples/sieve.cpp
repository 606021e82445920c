// sieve: the prime sieve as a growing pipeline of filter processes
// (McIlroy's sieve, the classic example of Hoare's CSP and of Go).
//
//   numbers 2,3,4,... --> filter(2) --> filter(3) --> filter(5) --> ...
//
// A sieve process reads its first number: that is a prime. It reports it,
// then becomes two processes in Parallel: a filter that passes on every
// number not divisible by the prime, and a new sieve reading the filter's
// output. So the pipeline grows by one filter per prime found.
//
// Stopping: main reads the primes it wants, then poisons the primes
// channel. The newest sieve's next write throws ChannelPoisoned, and
// csp::process poisons every channel end among its arguments, so the
// poison travels back up the pipeline to the number generator: every
// process ends, no sentinel, no counting.
#include <csp/csp.hpp>
#include <cstdio>

void numbers(csp::Writer<int> out) {
  for (int n = 2;; ++n) out.write(n);
}

void filter(int prime, csp::Reader<int> in, csp::Writer<int> out) {
  for (;;) {
    int n = in.read();
    if (n % prime != 0) out.write(n);
  }
}

void sieve(csp::Reader<int> in, csp::Writer<int> primes) {
  int prime = in.read();
  primes.write(prime);
  csp::Channel<int> rest{"after " + std::to_string(prime)};
  csp::Parallel(csp::process(filter, prime, in, rest.writer()), csp::process(sieve, rest.reader(), primes));
}

int main() {
  constexpr int kPrimes = 100;
  csp::Channel<int> candidates{"numbers"}, primes{"primes"};
  csp::Parallel(csp::process(numbers, candidates.writer()), csp::process(sieve, candidates.reader(), primes.writer()),
                csp::process(
                    [](csp::Reader<int> in) {
                      for (int i = 1; i <= kPrimes; ++i) std::printf("%d%s", in.read(), i % 10 ? " " : "\n");
                      in.poison();  // the pipeline unwinds from here
                    },
                    primes.reader()));
  std::printf("%d primes, %d filter processes, all ended by poison\n", kPrimes, kPrimes);
}
