// token_ring: a ring of 100,000 processes passing a token (the classic
// "thread ring" of the Computer Language Benchmarks Game, and Armstrong's
// Erlang ring).
//
//   starter -> node 1 -> node 2 -> ... -> node 99999 -> starter
//
// Each node reads the token from its left neighbour, adds one, and writes
// it to its right neighbour. The starter sends 0 round the ring three
// times; each lap it comes back increased by the ring's length. Then the
// starter poisons the ring and every node ends.
//
// Each process is a coroutine with its own stack: a parked node costs about
// one resident page. The ring is built before any of it runs.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>
#include <vector>

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer keeps a large shadow state per fiber and runs out of
// memory long before 100,000 of them: a smaller ring in TSan builds.
constexpr int kProcesses = 2000;
#elif defined(__SANITIZE_ADDRESS__)
// AddressSanitizer makes each stack costlier to set up: 10,000 keep the
// run short.
constexpr int kProcesses = 10000;
#else
constexpr int kProcesses = 100000;
#endif
constexpr int kLaps = 3;

void node(csp::Reader<int> left, csp::Writer<int> right) {
  for (;;) right.write(left.read() + 1);
}

int main() {
  std::vector<csp::Channel<int>> links(kProcesses);  // links[i]: from process i to process i+1
  std::vector<csp::Process<void>> ring;
  ring.reserve(kProcesses);
  for (int i = 1; i < kProcesses; ++i) ring.push_back(csp::process(node, links[i - 1].reader(), links[i].writer()));
  ring.push_back(csp::process(
      [](csp::Writer<int> out, csp::Reader<int> in) {
        int token = 0;
        for (int lap = 1; lap <= kLaps; ++lap) {
          out.write(token);
          token = in.read() + 1;  // the starter is a member of the ring too
          std::printf("lap %d: token is %d (%s)\n", lap, token, token == lap * kProcesses ? "ok" : "WRONG");
        }
        out.poison();
      },
      links[0].writer(), links[kProcesses - 1].reader()));

  std::printf("ring of %d processes\n", kProcesses);
  auto start = std::chrono::steady_clock::now();
  csp::Parallel(std::move(ring));
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d hops, all %d processes ended by poison\n", kProcesses * kLaps, kProcesses);
  std::fprintf(stderr, "token_ring: %.3f s\n", took);
}
