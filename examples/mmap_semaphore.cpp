// mmap_semaphore: the seeds' "shared memory + semaphore by hand".
//
// Python (seed 003, "手动实现进程间通信"):
//   sem = multiprocessing.Semaphore(1)
//   sender:   time.sleep(1); sem.acquire(); data.write(b'Hello, receiver!'); sem.release()
//   receiver: sem.acquire(); print(data.read()); sem.release()
//
// The seed's semaphore starts at 1 and is used as a lock, so it only keeps
// the two from touching the buffer at the same moment; it does not make
// the receiver wait for the message. The receiver usually wins the race
// (the sender sleeps first) and prints an empty buffer; the sleep is what
// the seed relies on. (Its multiprocessing.shared_memory() call does not
// exist either.)
//
// Done right: a semaphore that starts at 0 says "the message is there".
// The sender writes, then releases; the receiver acquires, then reads: the
// order is guaranteed, whoever starts first. A second semaphore hands the
// buffer back, so the two can take turns for many messages (a one-slot
// bounded buffer: Dijkstra's "full"/"empty" pair).
//
// csp::SharedArray<char> is the mmap'ed buffer and csp::Semaphore{n,
// csp::interprocess} the semaphores; both live in shared memory that the
// os_process children inherit.
#include <chrono>
#include <csp/csp.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

using namespace std::chrono_literals;

constexpr std::size_t kSize = 64;

void sender(csp::SharedArray<char> data, csp::Semaphore full, csp::Semaphore empty) {
  const char* messages[] = {"Hello, receiver!", "Second message", "Last one"};
  for (const char* m : messages) {
    empty.acquire();                        // wait until the buffer is free
    std::strncpy(data.data(), m, kSize - 1);
    full.release();                         // the message is there
  }
}

void receiver(csp::SharedArray<char> data, csp::Semaphore full, csp::Semaphore empty) {
  for (int i = 0; i < 3; ++i) {
    full.acquire();  // wait for a message
    std::printf("receiver: %s\n", data.data());
    std::fflush(stdout);
    empty.release();  // hand the buffer back
  }
}

int main() {
  csp::SharedArray<char> data(kSize);                // zero-filled, like the seed's b'\0' * size
  csp::Semaphore full{0, csp::interprocess};          // messages ready to read
  csp::Semaphore empty{1, csp::interprocess};         // free buffers

  // The receiver starts first and still waits for the sender's message.
  csp::Parallel(csp::os_process(receiver, data, full, empty),
                csp::os_process([=] {
                  // The seed's sleep, now harmless. (A plain sleep: this child
                  // runs no other process that csp::sleep_for would let run.)
                  std::this_thread::sleep_for(50ms);
                  sender(data, full, empty);
                }));
  std::puts("both processes done; the receiver never saw an empty buffer");
}
