// producer_consumer_timeouts: the seeds' Queue(maxsize) with put/get
// timeouts, queue.Full and queue.Empty.
//
// Python (seed 001):
//   q.put(item, block=True, timeout=0.05)   # raises queue.Full on timeout
//   q.get(block=True, timeout=0.05)         # raises queue.Empty on timeout
//   q.put_nowait(item) / q.get_nowait()
//
// csp: a channel with a buffer of 3. write_for(v, d) / read_for(d) wait at
// most d and say "not now" as a value (false / std::nullopt) instead of an
// exception; try_write / try_read never wait. A write that does not
// complete leaves the value with the caller: nothing is half-sent.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>

using namespace std::chrono_literals;

int main() {
  csp::Channel<int> q{"q", csp::buffer(3)};
  auto put = q.writer();
  auto get = q.reader();

  // A producer runs ahead of its consumer: the buffer takes three items,
  // the fourth put times out (queue.Full).
  std::puts("-- producer alone, buffer of 3 --");
  for (int item = 0; item < 4; ++item) {
    if (put.write_for(item, 20ms)) std::printf("put %d\n", item);
    else std::printf("put %d: Full (timed out after 20 ms, %d is still ours)\n", item, item);
  }
  if (!put.try_write(99)) std::puts("put_nowait 99: Full");

  // A consumer drains it; the next get times out (queue.Empty).
  std::puts("-- consumer alone --");
  for (int n = 0; n < 4; ++n) {
    if (auto item = get.read_for(20ms)) std::printf("get %d\n", *item);
    else std::puts("get: Empty (timed out after 20 ms)");
  }
  if (!get.try_read()) std::puts("get_nowait: Empty");

  // Both at once: a fast producer and a slow consumer. The producer's puts
  // time out while the consumer sleeps; it retries each item until it fits,
  // so nothing is lost and nothing is sent twice.
  std::puts("-- fast producer, slow consumer --");
  auto [full_count, received] = csp::Parallel(
      csp::process(
          [](csp::Writer<int> out) {
            int full = 0;
            for (int item = 0; item < 10; ++item)
              while (!out.write_for(item, 1ms)) ++full;
            out.retire();
            return full;
          },
          put),
      csp::process(
          [](csp::Reader<int> in) {
            int expected = 0, count = 0;
            for (int item : in) {
              if (item != expected++) std::printf("out of order: %d\n", item);
              ++count;
              csp::sleep_for(3ms);
            }
            return count;
          },
          get));
  std::printf("consumer received %d items in order\n", received);
  std::printf("producer saw Full %s\n", full_count > 0 ? "at least once, and retried" : "never");
}
