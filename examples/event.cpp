// event: the seeds' threading.Event, one side waits, the other sets.
//
// Python (seed 002):
//   event = threading.Event()
//   def wait_event(): print("waiting for event..."); event.wait(); print("event has been set.")
//   def set_event():  print("setting event..."); event.set()
//
// csp::Event is the same flag, shared by handle. A waiting coroutine parks
// (its worker runs other processes meanwhile); a waiting thread sleeps on a
// futex. Here the waiter is a thread_process, as in the seed, and the
// setter a coroutine; any mix works. wait_for(d) is Event.wait(timeout).
//
// Constructed as csp::Event{csp::interprocess} the same event works across
// os_process children too.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>

using namespace std::chrono_literals;

void wait_event(csp::Event event) {
  std::puts("waiting for event...");
  event.wait();
  std::puts("event has been set.");
}

void set_event(csp::Event event) {
  csp::sleep_for(10ms);  // some work first
  std::puts("setting event...");
  event.set();
}

int main() {
  csp::Event event;
  std::printf("wait_for(20ms) before anyone sets it: %s\n", event.wait_for(20ms) ? "set" : "timed out");

  csp::Parallel(csp::thread_process(wait_event, event), csp::process(set_event, event));

  std::printf("is_set: %s\n", event.is_set() ? "true" : "false");
  event.clear();
  std::printf("after clear, is_set: %s\n", event.is_set() ? "true" : "false");

  // One set() wakes every waiter.
  int woken = 0;
  csp::Mutex m;
  auto waiter = [&woken, &m](csp::Event e) {
    e.wait();
    std::lock_guard lock(m);
    ++woken;
  };
  csp::Parallel(csp::process(waiter, event) * 5, [event]() mutable { event.set(); });
  std::printf("one set() woke %d waiters\n", woken);
}
