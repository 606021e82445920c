// pycsp_parallel: the seeds' PyCSP example, two processes in Parallel.
//
// Python (seed 002, PyCSP):
//   @process
//   def P1(): time.sleep(1); print('P1 exiting')
//   @process
//   def P2(): time.sleep(1); print('P2 exiting')
//   Parallel(P1(), P2()); print('Terminating')
//
// csp::process turns any function into a process; Parallel runs them all
// at once and returns when every one has finished, so 'Terminating' always
// comes last. Both sleep at the same time: the whole takes one nap, not two.
// (The naps are 100 ms here instead of 1 s.)
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>

using namespace std::chrono_literals;

void P1() {
  csp::sleep_for(100ms);  // parks this process; its worker runs others meanwhile
  std::puts("P1 exiting");
}

void P2() {
  csp::sleep_for(100ms);
  std::puts("P2 exiting");
}

int main() {
  auto start = std::chrono::steady_clock::now();
  csp::Parallel(csp::process(P1), csp::process(P2));
  std::puts("Terminating");
  auto took = std::chrono::steady_clock::now() - start;
  std::printf("both slept at once: %s\n", took < 190ms ? "yes" : "no");
}
