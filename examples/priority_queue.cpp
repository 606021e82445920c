// priority_queue: the seeds' PriorityQueue between a producer and a consumer.
//
// Python (seed 003):
//   q = multiprocessing.PriorityQueue()     # (there is no such class; the
//   q.put((1, 'high-priority message'))     #  seed meant queue.PriorityQueue
//   q.put((2, 'low-priority message'))      #  behind a Manager)
//   ... q.put(None) to stop the consumer
//
// csp: a channel with csp::priority_buffer(n) hands out the smallest value
// first (std::less on std::pair: the priority number, then the text). The
// producer retires instead of sending None. Here the producer finishes
// before the consumer starts (Sequence), so every message is waiting and
// they come out strictly by priority; with both running at once, the
// consumer gets the most urgent of whatever is buffered at each read.
#include <csp/csp.hpp>
#include <cstdio>
#include <string>
#include <utility>

using Message = std::pair<int, std::string>;  // (priority, text): lower is more urgent

int main() {
  csp::Channel<Message> q{"messages", csp::priority_buffer(16)};

  csp::Sequence(
      csp::process(
          [](csp::Writer<Message> out) {
            out.write({2, "low-priority message"});
            out.write({1, "high-priority message"});
            out.write({3, "lowest-priority message"});
            out.write({1, "another high-priority message"});
            std::puts("messages sent");
            out.retire();  // instead of q.put(None)
          },
          q.writer()),
      csp::process(
          [](csp::Reader<Message> in) {
            for (auto [priority, text] : in)
              std::printf("consumed '%s' with priority %d\n", text.c_str(), priority);
          },
          q.reader()));

  // A comparator of your own: largest first.
  csp::Channel<int> biggest{csp::priority_buffer(8, std::greater<>{})};
  auto w = biggest.writer();
  for (int v : {5, 9, 1, 7}) w.write(v);
  w.retire();
  std::printf("largest first:");
  for (int v : biggest.reader()) std::printf(" %d", v);
  std::printf("\n");
}
