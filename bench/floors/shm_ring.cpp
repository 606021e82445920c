// shm_ring.cpp: a single-producer single-consumer ring of fixed-size slots in
// a POSIX shared-memory segment, between this process and a forked child that
// opens the segment by name (its own mapping, as an unrelated process would).
//
// Invariants (per ring):
// - head_ counts slots published; only the producer writes it. tail_ counts
//   slots released; only the consumer writes it. 0 <= head_ - tail_ <= slots.
// - Slot k (mod slots) belongs to the producer while k >= head_ and to the
//   consumer while tail_ <= k < head_.
// - Each side keeps a private copy of the other's index and reloads it only
//   when the ring looks full (producer) or empty (consumer), so the shared
//   lines move between CPUs only then.
// - Messages larger than a slot travel as consecutive chunks of one slot each.
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <new>

#include "detail.hpp"

namespace cspbench::floors {

const char* to_string(Wake w) noexcept {
  switch (w) {
    case Wake::spin: return "spin";
    case Wake::futex: return "futex";
    case Wake::eventfd: return "eventfd";
  }
  return "?";
}

namespace {

using detail::Child;
using detail::now_s;
using detail::spin_until;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shm needs address-free atomics");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "shm needs address-free atomics");

// Lives at the start of a ring's memory; slot data begins one page later, so
// slots are page-aligned whenever the segment is.
struct RingHeader {
  alignas(64) std::atomic<std::uint64_t> head;    // producer's; SYNC: release in publish() / acquire in Consumer::empty()
  alignas(64) std::atomic<std::uint64_t> tail;    // consumer's; SYNC: release in release() / acquire in Producer::full()
  alignas(64) std::atomic<std::uint32_t> wake;    // futex word, bumped by the producer after each publish
  alignas(64) std::atomic<std::uint64_t> attached;  // set to 1 by the child once it has mapped the segment
  std::atomic<std::uint64_t> done;                // stream: messages the consumer verified, stored at the end
  std::uint64_t slot_bytes;                       // immutable after init
  std::uint64_t slots;                            // power of two, immutable after init

  static constexpr std::size_t kDataOffset = 4096;
  unsigned char* data() { return reinterpret_cast<unsigned char*>(this) + kDataOffset; }
};
static_assert(sizeof(RingHeader) <= RingHeader::kDataOffset);

struct Geometry {
  std::size_t slot_bytes;
  std::size_t slots;
  std::size_t bytes() const { return RingHeader::kDataOffset + slot_bytes * slots; }
};

// 64 B .. 64 KiB slots (the message size rounded up to a power of two), at
// least 16 slots and 64 KiB of slot data: 64 B x 1024, 4 KiB x 16, 64 KiB x 16.
Geometry geometry_for(std::size_t size) {
  const std::size_t slot = std::clamp<std::size_t>(std::bit_ceil(size), 64, 64 * 1024);
  return {slot, std::max<std::size_t>(16, 64 * 1024 / slot)};
}

RingHeader* ring_init(void* mem, Geometry g) {
  auto* h = new (mem) RingHeader;
  h->head.store(0, std::memory_order_relaxed);
  h->tail.store(0, std::memory_order_relaxed);
  h->wake.store(0, std::memory_order_relaxed);
  h->attached.store(0, std::memory_order_relaxed);
  h->done.store(0, std::memory_order_relaxed);
  h->slot_bytes = g.slot_bytes;
  h->slots = g.slots;
  return h;
}

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t val, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, val, timeout, nullptr, 0);
}

// How a consumer waits for an empty ring to fill, and how the producer wakes
// it. Futex and eventfd variants always wake after a publish: in a ping-pong
// the peer is asleep anyway, so a "sleeping" flag would only add a shared line.
struct Waker {
  Wake mode;
  int efd;            // eventfd (Wake::eventfd), shared across the fork
  const Child* peer;  // checked while waiting (parent side); nullptr in the child

  template <class Empty>
  void wait(RingHeader* h, Empty&& empty) const {
    switch (mode) {
      case Wake::spin:
        spin_until([&] { return !empty(); }, peer);
        return;
      case Wake::futex: {
        const timespec timeout{0, 100'000'000};
        for (;;) {
          const std::uint32_t seq = h->wake.load(std::memory_order_acquire);
          if (!empty()) return;
          // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
          const long r = futex(&h->wake, FUTEX_WAIT, seq, peer ? &timeout : nullptr);
          if (r != 0 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
            detail::fail_errno("futex wait", __FILE__, __LINE__);
          if (peer && r != 0 && errno == ETIMEDOUT) peer->check_alive();
        }
      }
      case Wake::eventfd:
        while (empty()) {
          pollfd p{efd, POLLIN, 0};
          const int r = poll(&p, 1, peer ? 100 : -1);
          if (r < 0 && errno != EINTR) detail::fail_errno("poll", __FILE__, __LINE__);
          if (r == 0) {
            if (peer) peer->check_alive();
            continue;
          }
          if (r > 0) {
            std::uint64_t count = 0;
            if (read(efd, &count, 8) != 8 && errno != EAGAIN && errno != EINTR)
              detail::fail_errno("eventfd read", __FILE__, __LINE__);
          }
        }
        return;
    }
  }

  void notify(RingHeader* h) const {
    switch (mode) {
      case Wake::spin:
        return;
      case Wake::futex:
        h->wake.fetch_add(1, std::memory_order_release);  // SYNC with the acquire load in wait()
        if (futex(&h->wake, FUTEX_WAKE, 1, nullptr) < 0)
          detail::fail_errno("futex wake", __FILE__, __LINE__);
        return;
      case Wake::eventfd: {
        const std::uint64_t one = 1;
        if (write(efd, &one, 8) != 8) detail::fail_errno("eventfd write", __FILE__, __LINE__);
        return;
      }
    }
  }
};

class Producer {
 public:
  Producer(RingHeader* h, Waker waker)
      : h_(h), data_(h->data()), slot_(h->slot_bytes), slots_(h->slots), waker_(waker) {}

  // Copies msg into the ring, one slot per chunk; spins while the ring is full.
  void send(const unsigned char* msg, std::size_t size) {
    for (std::size_t off = 0; off < size; off += slot_) {
      if (full()) spin_until([&] { return !full(); }, waker_.peer);
      std::memcpy(data_ + (head_ & (slots_ - 1)) * slot_, msg + off, std::min(slot_, size - off));
      h_->head.store(++head_, std::memory_order_release);  // SYNC with acquire in Consumer::empty()
      waker_.notify(h_);
    }
  }

 private:
  bool full() {
    if (head_ - tail_cache_ < slots_) return false;
    tail_cache_ = h_->tail.load(std::memory_order_acquire);  // SYNC with release in Consumer::recv()
    return head_ - tail_cache_ >= slots_;
  }

  RingHeader* h_;
  unsigned char* data_;               // first slot
  std::size_t slot_, slots_;          // geometry
  Waker waker_;                       // wakes the consumer after each publish
  std::uint64_t head_ = 0;            // private copy of h_->head (we are its only writer)
  std::uint64_t tail_cache_ = 0;      // last tail seen
};

class Consumer {
 public:
  Consumer(RingHeader* h, Waker waker)
      : h_(h), data_(h->data()), slot_(h->slot_bytes), slots_(h->slots), waker_(waker) {}

  // Copies the next message out of the ring into msg, waiting as waker_ says.
  void recv(unsigned char* msg, std::size_t size) {
    for (std::size_t off = 0; off < size; off += slot_) {
      if (empty()) waker_.wait(h_, [&] { return empty(); });
      std::memcpy(msg + off, data_ + (tail_ & (slots_ - 1)) * slot_, std::min(slot_, size - off));
      h_->tail.store(++tail_, std::memory_order_release);  // SYNC with acquire in Producer::full()
    }
  }

 private:
  bool empty() {
    if (tail_ != head_cache_) return false;
    head_cache_ = h_->head.load(std::memory_order_acquire);  // SYNC with release in Producer::send()
    return tail_ == head_cache_;
  }

  RingHeader* h_;
  unsigned char* data_;
  std::size_t slot_, slots_;
  Waker waker_;
  std::uint64_t tail_ = 0;        // private copy of h_->tail (we are its only writer)
  std::uint64_t head_cache_ = 0;  // last head seen
};

}  // namespace

double shm_ring_pingpong(Wake wake, std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  const Geometry g = geometry_for(size);
  const std::size_t one = g.bytes();  // a multiple of 64 B; the second ring starts page-aligned
  const std::size_t ring_span = (one + 4095) / 4096 * 4096;
  detail::ShmSegment seg(2 * ring_span);
  RingHeader* to_child = ring_init(seg.data(), g);
  RingHeader* to_parent = ring_init(static_cast<char*>(seg.data()) + ring_span, g);
  detail::Fd efd_child, efd_parent;  // wake the child / wake the parent
  if (wake == Wake::eventfd) {
    efd_child.reset(FLOOR_SYS(eventfd(0, 0)));
    efd_parent.reset(FLOOR_SYS(eventfd(0, 0)));
  }
  int parent_cpu = -1, child_cpu = -1;
  detail::pin_cpus(parent_cpu, child_cpu);
  detail::PinScope pin(parent_cpu);

  const char* name = seg.name();
  Child child(
      [&] {
        auto* m = static_cast<char*>(detail::ShmSegment::attach(name, 2 * ring_span));
        auto* in_ring = reinterpret_cast<RingHeader*>(m);
        auto* out_ring = reinterpret_cast<RingHeader*>(m + ring_span);
        Consumer in(in_ring, {wake, efd_child.get(), nullptr});
        Producer out(out_ring, {wake, efd_parent.get(), nullptr});
        detail::PageBuf msg(size);
        in_ring->attached.store(1, std::memory_order_release);
        for (std::uint64_t i = 0; i <= n; ++i) {
          in.recv(msg.data(), size);
          FLOOR_CHECK(detail::stamp_is(msg.data(), size, i));
          detail::stamp(msg.data(), size, i + 1);
          out.send(msg.data(), size);
        }
      },
      child_cpu);
  spin_until([&] { return to_child->attached.load(std::memory_order_acquire) == 1; }, &child);
  seg.unlink();  // both sides have it mapped: nothing can be left in /dev/shm now

  Producer out(to_child, {wake, efd_child.get(), &child});
  Consumer in(to_parent, {wake, efd_parent.get(), &child});
  detail::PageBuf msg(size, 0xAB);
  double t0 = now_s();
  for (std::uint64_t i = 0; i <= n; ++i) {  // round trip 0 is the warm-up handshake
    if (i == 1) t0 = now_s();
    detail::stamp(msg.data(), size, i);
    out.send(msg.data(), size);
    in.recv(msg.data(), size);
    FLOOR_CHECK(detail::stamp_is(msg.data(), size, i + 1));
  }
  const double t1 = now_s();
  child.join();
  return n ? t1 - t0 : 0.0;
}

double shm_ring_stream(std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  const Geometry g = geometry_for(size);
  detail::ShmSegment seg(g.bytes());
  RingHeader* ring = ring_init(seg.data(), g);
  int parent_cpu = -1, child_cpu = -1;
  detail::pin_cpus(parent_cpu, child_cpu);
  detail::PinScope pin(parent_cpu);

  const char* name = seg.name();
  const std::size_t bytes = g.bytes();
  Child child(
      [&] {
        auto* h = static_cast<RingHeader*>(detail::ShmSegment::attach(name, bytes));
        Consumer in(h, {Wake::spin, -1, nullptr});
        detail::PageBuf msg(size);
        h->attached.store(1, std::memory_order_release);
        for (std::uint64_t i = 0; i < n; ++i) {
          in.recv(msg.data(), size);
          FLOOR_CHECK(detail::stamp_is(msg.data(), size, i));
        }
        h->done.store(n, std::memory_order_release);  // SYNC with the parent's acquire below
      },
      child_cpu);
  spin_until([&] { return ring->attached.load(std::memory_order_acquire) == 1; }, &child);
  seg.unlink();

  Producer out(ring, {Wake::spin, -1, &child});
  detail::PageBuf src(size, 0xAB);
  const double t0 = now_s();
  for (std::uint64_t i = 0; i < n; ++i) {
    detail::stamp(src.data(), size, i);
    out.send(src.data(), size);
  }
  spin_until([&] { return ring->done.load(std::memory_order_acquire) == n; }, &child);
  const double t1 = now_s();
  child.join();
  return t1 - t0;
}

std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
}

double shm_ring_wakeup(Wake wake, std::uint64_t n) {
  if (wake == Wake::spin) throw Failure("shm_ring_wakeup: a spinning reader is never parked");
  constexpr std::size_t kSize = 16;  // sequence stamp + send time
  const Geometry g = geometry_for(kSize);
  detail::ShmSegment seg(g.bytes());
  RingHeader* ring = ring_init(seg.data(), g);
  detail::Fd efd;
  if (wake == Wake::eventfd) efd.reset(FLOOR_SYS(eventfd(0, 0)));
  int parent_cpu = -1, child_cpu = -1;
  detail::pin_cpus(parent_cpu, child_cpu);
  detail::PinScope pin(parent_cpu);

  const char* name = seg.name();
  const std::size_t bytes = g.bytes();
  Child child(
      [&] {
        auto* h = static_cast<RingHeader*>(detail::ShmSegment::attach(name, bytes));
        Consumer in(h, {wake, efd.get(), nullptr});
        unsigned char msg[kSize];
        h->attached.store(1, std::memory_order_release);
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0; i <= n; ++i) {  // message 0 is the warm-up
          in.recv(msg, kSize);
          const std::uint64_t now = monotonic_ns();
          std::uint64_t seq = 0, sent = 0;
          std::memcpy(&seq, msg, 8);
          std::memcpy(&sent, msg + 8, 8);
          FLOOR_CHECK(seq == i && sent <= now);
          if (i > 0) sum += now - sent;
        }
        h->done.store(sum, std::memory_order_release);  // SYNC with the parent's acquire after join()
      },
      child_cpu);
  spin_until([&] { return ring->attached.load(std::memory_order_acquire) == 1; }, &child);
  seg.unlink();

  Producer out(ring, {wake, efd.get(), &child});
  unsigned char msg[kSize];
  const timespec gap{0, static_cast<long>(kWakeGapNs)};
  for (std::uint64_t i = 0; i <= n; ++i) {
    nanosleep(&gap, nullptr);
    const std::uint64_t sent = monotonic_ns();
    std::memcpy(msg, &i, 8);
    std::memcpy(msg + 8, &sent, 8);
    out.send(msg, kSize);
  }
  child.join();
  return double(ring->done.load(std::memory_order_acquire)) * 1e-9;
}

}  // namespace cspbench::floors
