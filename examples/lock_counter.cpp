// lock_counter: the seeds' Lock-protected shared counter, done with a
// channel instead.
//
// Python (seed 002):
//   count = 0; lock = threading.Lock()
//   def increment():
//       global count
//       for i in range(1000000):
//           lock.acquire(); count += 1; lock.release()
//   two threads run increment(); print("count = ", count)
//
// First the direct translation with csp::Mutex (it works: a waiting process
// parks, its worker runs others). Then the CSP way: nobody shares `count`.
// A counter process owns it; incrementers send it "+1" messages over a
// channel; whoever wants the total asks over another channel. There is no
// lock to forget, and the counter could live in another OS process or on
// another machine without a change to the incrementers.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>
#include <mutex>

constexpr int kIncrements = 100000;  // per incrementer (the seed does 10^6; 10^5 keeps this quick)

// --- 1. shared memory and a lock ------------------------------------------

long count = 0;  // shared, guarded by `lock` below

void increment_locked(csp::Mutex lock) {
  for (int i = 0; i < kIncrements; ++i) {
    std::lock_guard guard(lock);
    ++count;
  }
}

// --- 2. a counter process and messages ------------------------------------

// Owns the count. Serves increments until every incrementer has retired,
// then answers the one query for the total.
void counter(csp::Reader<int> increments, csp::Writer<long> total) {
  long n = 0;  // only this process ever touches it
  for (int delta : increments) n += delta;
  total.write(n);
}

void increment_by_message(csp::Writer<int> out) {
  for (int i = 0; i < kIncrements; ++i) out.write(1);
}  // returning destroys `out`: this incrementer retires from the channel

int main() {
  csp::Mutex lock;
  csp::Parallel(csp::process(increment_locked, lock), csp::process(increment_locked, lock));
  std::printf("with csp::Mutex:      count = %ld\n", count);

  csp::Channel<int> increments{"increments", csp::buffer(64)};
  csp::Channel<long> total{"total"};
  auto results = csp::Parallel(
      csp::process(counter, increments.reader(), total.writer()),
      csp::process(increment_by_message, increments.writer()),
      csp::process(increment_by_message, increments.writer()),
      csp::process([](csp::Reader<long> in) { return in.read(); }, total.reader()));
  std::printf("with a counter process: count = %ld\n", std::get<3>(results));
}
