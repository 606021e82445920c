// shared_counter: the seeds' multiprocessing.Value and Array, done right.
//
// Python (seed 000, 2.1):
//   def func(value): value.value += 1
//   value = multiprocessing.Value('i', 0)
//   10 processes run func; print(value.value)        # "should be 10"
//
// It usually prints 10, but `value.value += 1` is a read followed by a
// write (Value's own lock is taken for each, not across both): two
// processes can both read 5 and both write 6, and one increment is lost.
// With one increment per process the window is tiny; with many it shows.
// Below: the same read-then-write with csp::SharedValue (load then store),
// which loses updates the same way, then the two correct forms: one atomic
// fetch_add, or with_lock around the whole update.
//
// csp::SharedValue<T> / SharedArray<T> live in shared memory that
// os_process children inherit (they are forked), so a copy of the handle
// in a child is the same memory, with no pickling and no proxy.
#include <csp/csp.hpp>
#include <cstdio>
#include <vector>

constexpr int kProcesses = 10;
constexpr int kRepeats = 100000;

/// Runs `body` in kProcesses OS processes at once; they start together
/// when `go` is set, so they really overlap.
template <class F>
void in_ten_processes(F body) {
  csp::Event go{csp::interprocess};
  std::vector<csp::Process<void>> children;
  for (int i = 0; i < kProcesses; ++i)
    children.push_back(csp::os_process([go, body]() mutable {
      go.wait();
      body();
    }));
  csp::Parallel(std::move(children), [go]() mutable { go.set(); });
}

int main() {
  // The seed, literally: one increment per process.
  csp::SharedValue<int> value{0};
  in_ten_processes([value]() mutable { value.fetch_add(1); });
  std::printf("10 processes, one fetch_add(1) each: %d\n", value.load());

  // The seed's race, made visible: kRepeats increments per process.
  csp::SharedValue<long> racy{0}, atomic{0}, locked{0};
  in_ten_processes([racy]() mutable {
    for (int i = 0; i < kRepeats; ++i) racy.store(racy.load() + 1);  // like value.value += 1
  });
  in_ten_processes([atomic]() mutable {
    for (int i = 0; i < kRepeats; ++i) atomic.fetch_add(1);  // one indivisible step
  });
  in_ten_processes([locked]() mutable {
    for (int i = 0; i < kRepeats; ++i) locked.with_lock([](long& v) { ++v; });  // read and write under one lock
  });
  const long expected = long{kProcesses} * kRepeats;
  std::printf("10 processes x %d increments, expected %ld:\n", kRepeats, expected);
  std::printf("  load() then store(): %s\n",
              racy.load() < expected ? "lost updates (two processes read the same value)"
                                     : "no update lost this time (the race is still there)");
  std::printf("  fetch_add(1):        %ld\n", atomic.load());
  std::printf("  with_lock(++v):      %ld\n", locked.load());
  std::fprintf(stderr, "load()+store() total: %ld of %ld\n", racy.load(), expected);

  // Array('i', 5) (seed 001): process i writes a[i] = i.
  csp::SharedArray<int> a(5);
  std::vector<csp::Process<void>> writers;
  for (int i = 0; i < 5; ++i) writers.push_back(csp::os_process([a, i] { a[i] = i * i; }));
  csp::Parallel(std::move(writers));
  std::printf("Array('i', 5) after process i wrote i*i:");
  for (int x : a) std::printf(" %d", x);
  std::printf("\n");

  // Value('d') and Array('i', range(10)) (seed 002): a child changes both.
  csp::SharedValue<double> num{0.0};
  csp::SharedArray<int> arr{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  csp::Parallel(csp::os_process([num, arr]() mutable {
    num.store(3.1415927);
    for (int& x : arr) x = -x;
  }));
  std::printf("%.7f\n[", num.load());
  for (std::size_t i = 0; i < arr.size(); ++i) std::printf("%s%d", i ? ", " : "", arr[i]);
  std::printf("]\n");
}
