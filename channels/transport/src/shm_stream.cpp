// shm_stream.cpp: ShmStream (a pair of SPSC byte rings in one shared
// segment), the segment itself, make_shm_fork_link() and make_shm_pair().
// The shm:// rendezvous is in shm_rendezvous.cpp.
//
// Segment layout (offsets from its start; both sides map all of it):
//   0               Header: magic, version, sizes, name, RingControl x 2
//   4096            data of ring 0 (side 0 -> side 1), ring_bytes
//   4096 + R        data of ring 1 (side 1 -> side 0), ring_bytes
// Side s produces into ring s and consumes ring 1-s.
//
// Invariants (ring r: producer side r, consumer side 1-r; C = capacity)
// - head and tail count bytes since the stream began and never wrap;
//   tail <= head <= tail + C. Bytes [tail, head) are readable, bytes
//   [head, tail + C) writable, at data[pos & (C - 1)].
// - head is stored only by the producer, tail only by the consumer. Each
//   keeps its own index in process memory and a possibly stale copy of the
//   other's: a stale copy only under-states what it may use, never more.
// - The producer writes data only in [head, tail_seen + C) and publishes it
//   with a (release or seq_cst) store of head; the consumer reads only
//   [tail, head_seen) and frees it with a (release or seq_cst) store of tail.
//   Indices from the peer are checked (head - tail <= C) before use, so a
//   peer that is not csp cannot make us copy outside the ring.
// - reader_sleeping goes 0 -> 1 only by the consumer, just before it parks;
//   back to 0 by whoever claims the wake-up (the producer, by exchange) or by
//   the consumer when it stops waiting. writer_sleeping likewise with the
//   roles swapped; space_wanted is written by the producer before it sets
//   writer_sleeping and read by the consumer after seeing it set.
// - No wake-up is lost (Dekker): the consumer stores reader_sleeping = 1,
//   then loads head; the producer stores head, then loads reader_sleeping;
//   all four are seq_cst operations, so in their single total order at least
//   one load sees the other side's store: either the consumer does not park,
//   or the producer writes the consumer's eventfd. Same for writer_sleeping /
//   tail. (seq_cst operations rather than relaxed ones plus seq_cst fences:
//   the same cost on x86, where the store becomes an xchg instead of a mov
//   plus mfence, and ThreadSanitizer models them, which it does not fences.)
//   In this mode every store to head, tail and the sleeping flags is
//   seq_cst, so the total order covers all of them.
// - Asymmetric barriers: the store-then-load above costs the publishing side
//   a full barrier per publication, which stalls it until the index's cache
//   line comes back from the spinning peer (about one cross-core hop per
//   small write). Where membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) works,
//   the parking side pays instead: it stores its sleeping flag and then runs
//   that barrier, which executes a full barrier on every CPU running a
//   registered process; the publishing side (registered) may then store its
//   index with release and load the flag after only a compiler barrier.
//   Either the peer's barrier came before our store (then our load sees the
//   flag), or after our load (then its load sees our index), or between them
//   (an ordinary Dekker). A side publishes light only on a ring whose peer
//   has set consumer_membarrier / producer_membarrier, and a side that set
//   it always barriers before parking; so each pair is sound, and a peer
//   without membarrier keeps both sides on seq_cst. Off unless asked for
//   (ShmOptions::use_membarrier, CSP_SHM_MEMBARRIER=1): see shm.hpp for the
//   figures.
// - writer_closed is set once by the producer's close(), after its last head
//   store (release); a consumer that sees it (acquire) and then an empty ring
//   is at end of stream. reader_closed is set once by the consumer's close().
// - There is no lock in the segment: a process that dies anywhere leaves
//   indices that are consistent, and the survivor learns of the death from
//   the lifeline socket, never from shared memory.
// - A reader or writer spins only on its own ring indices and flags; it
//   parks on exactly one eventfd (plus the lifeline), which only the peer
//   (or close()) writes.
#include <csp/transport/shm.hpp>

#include <fcntl.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <csp/detail/spin_lock.hpp>
#include <csp/error.hpp>
#include <csp/runtime.hpp>
#include <csp/trace.hpp>

namespace csp::transport_detail {
namespace shm_detail {

inline constexpr std::uint64_t kMagic = 0x314d48532d505343ull;  // "CSP-SHM1", little-endian
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kDataOffset = 4096;
inline constexpr std::size_t kMinRing = 4096;
inline constexpr std::size_t kMaxRing = std::size_t{1} << 32;
// Bytes copied between two publications of an index: big enough that the
// fence and the cache-line transfer of the index vanish, small enough that
// the peer starts copying out while we are still copying in.
inline constexpr std::size_t kPublishChunk = 64 * 1024;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "ring indices must be lock-free (address-free) atomics to live in shared memory");

// One direction. Each group written by one side sits on its own cache line,
// so the hot indices never share a line with flags the other side polls.
struct RingControl {
  // Bytes published by the producer.
  alignas(64) std::atomic<std::uint64_t> head{0};
  // Bytes consumed by the consumer.
  alignas(64) std::atomic<std::uint64_t> tail{0};
  // Consumer's rare flags: it is parked (or about to), it closed its side,
  // it runs the heavy barrier before parking (set once, before it first
  // parks; see "Asymmetric barriers").
  alignas(64) std::atomic<std::uint32_t> reader_sleeping{0};
  std::atomic<std::uint32_t> reader_closed{0};
  std::atomic<std::uint32_t> consumer_membarrier{0};
  // Producer's rare flags: parked (or about to) waiting for space_wanted
  // free bytes; closed its side; runs the heavy barrier before parking.
  alignas(64) std::atomic<std::uint32_t> writer_sleeping{0};
  std::atomic<std::uint32_t> writer_closed{0};
  std::atomic<std::uint64_t> space_wanted{0};
  std::atomic<std::uint32_t> producer_membarrier{0};
};

struct Header {
  std::uint64_t magic;          // kMagic once initialised
  std::uint32_t version;        // kVersion
  std::uint32_t reserved;
  std::uint64_t ring_bytes;     // per direction, power of two
  std::uint64_t segment_bytes;  // kDataOffset + 2 * ring_bytes
  char name[32];                // "csp-shm-<16 hex>", NUL-terminated
  RingControl rings[2];
};
static_assert(sizeof(Header) <= kDataOffset, "the header must fit before the data");

struct Segment {
  void* base = nullptr;
  std::size_t bytes = 0;
  std::string name;

  Segment() = default;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment() {
    if (base) ::munmap(base, bytes);
  }
  [[nodiscard]] Header* header() const noexcept { return static_cast<Header*>(base); }
  [[nodiscard]] unsigned char* ring_data(int r) const noexcept {
    return static_cast<unsigned char*>(base) + kDataOffset + static_cast<std::size_t>(r) * header()->ring_bytes;
  }
};

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw TransportError("shm: " + what + ": " + std::strerror(errno));
}

std::string random_name() {
  unsigned char bytes[8];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t r = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail("getrandom");
    }
    got += static_cast<std::size_t>(r);
  }
  char text[8 + 2 * sizeof bytes + 1];
  std::snprintf(text, sizeof text, "csp-shm-%02x%02x%02x%02x%02x%02x%02x%02x", bytes[0], bytes[1],
                bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]);
  return text;
}

std::size_t ring_size(std::size_t requested) {
  std::size_t r = kMinRing;
  while (r < requested && r < kMaxRing) r <<= 1;
  return r;
}

}  // namespace

std::shared_ptr<Segment> create_segment(const ShmOptions& options, int& memfd_out) {
  const std::size_t ring = ring_size(options.ring_bytes);
  auto seg = std::make_shared<Segment>();
  seg->name = random_name();
  seg->bytes = kDataOffset + 2 * ring;
  // A memfd has no name in /dev/shm: nothing to unlink, nothing left behind.
  int fd = ::memfd_create(seg->name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) fail("memfd_create " + seg->name);
  track_fd(fd);
  if (::ftruncate(fd, static_cast<off_t>(seg->bytes)) != 0 ||
      // A peer must not shrink it under us (SIGBUS) nor grow it.
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    close_tracked(fd);
    errno = e;
    fail("sizing " + seg->name);
  }
  void* base = ::mmap(nullptr, seg->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) {
    int e = errno;
    close_tracked(fd);
    errno = e;
    fail("mmap " + seg->name);
  }
  seg->base = base;
  // Nobody else can see the segment yet: plain initialisation.
  auto* h = new (base) Header{};
  h->magic = kMagic;
  h->version = kVersion;
  h->ring_bytes = ring;
  h->segment_bytes = seg->bytes;
  std::snprintf(h->name, sizeof h->name, "%s", seg->name.c_str());
  memfd_out = fd;
  return seg;
}

std::shared_ptr<Segment> attach_segment(int memfd) {
  struct stat st {};
  if (::fstat(memfd, &st) != 0) {
    int e = errno;
    close_tracked(memfd);
    errno = e;
    fail("fstat of a received segment");
  }
  const auto bytes = static_cast<std::size_t>(st.st_size);
  if (bytes < kDataOffset + 2 * kMinRing) {
    close_tracked(memfd);
    throw TransportError("shm: received segment is too small (" + std::to_string(bytes) + " bytes)");
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
  int e = errno;
  close_tracked(memfd);
  if (base == MAP_FAILED) {
    errno = e;
    fail("mmap of a received segment");
  }
  auto seg = std::make_shared<Segment>();
  seg->base = base;
  seg->bytes = bytes;
  const Header* h = seg->header();
  if (h->magic != kMagic) throw TransportError("shm: received segment is not a csp segment");
  if (h->version != kVersion)
    throw TransportError("shm: segment has protocol version " + std::to_string(h->version) +
                         ", this process speaks " + std::to_string(kVersion));
  const std::uint64_t ring = h->ring_bytes;
  if (ring < kMinRing || ring > kMaxRing || (ring & (ring - 1)) != 0 ||
      h->segment_bytes != kDataOffset + 2 * ring || h->segment_bytes != bytes ||
      ::memchr(h->name, 0, sizeof h->name) == nullptr)
    throw TransportError("shm: received segment has a malformed header");
  seg->name = h->name;
  return seg;
}

const std::string& segment_name(const Segment& segment) noexcept { return segment.name; }

std::size_t segment_ring_bytes(const Segment& segment) noexcept {
  return static_cast<std::size_t>(segment.header()->ring_bytes);
}

}  // namespace shm_detail

using shm_detail::kPublishChunk;
using shm_detail::RingControl;

using csp::detail::cpu_relax;

namespace {

// Registers this process for MEMBARRIER_CMD_GLOBAL_EXPEDITED (once per
// process: a fork child registers again) and checks the barrier itself runs.
bool membarrier_ready() noexcept {
  static std::atomic<pid_t> ready_in{0};   // pid of the process that registered
  static std::atomic<pid_t> failed_in{0};  // pid of a process where it failed
  const pid_t pid = ::getpid();
  if (ready_in.load(std::memory_order_acquire) == pid) return true;
  if (failed_in.load(std::memory_order_acquire) == pid) return false;
  const long cmds = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  const bool ok = cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
                  (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0 &&
                  ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0 &&
                  ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
  (ok ? ready_in : failed_in).store(pid, std::memory_order_release);
  return ok;
}

// ShmOptions::use_membarrier when unset: CSP_SHM_MEMBARRIER=1 (read once).
bool membarrier_by_default() noexcept {
  static const bool on = [] {
    const char* v = std::getenv("CSP_SHM_MEMBARRIER");
    return v != nullptr && v[0] == '1' && v[1] == '\0';
  }();
  return on;
}

// The heavy half of the asymmetric barrier. False if the kernel refused it
// after all (it worked at registration): the caller then parks with a short
// timeout, so a wake-up lost to a light peer costs at most that.
bool heavy_barrier() noexcept { return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0; }

constexpr auto kUnsureParkLimit = std::chrono::milliseconds(1);

std::int64_t default_max_spin_ns() noexcept {
  static const std::int64_t value = csp::detail::SpinBudget::max_ns_from_env("CSP_SHM_SPIN_US", 50);
  return value;
}

std::int64_t ns_between(csp::detail::Deadline from, csp::detail::Deadline to) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
}

// A thread that may run on one CPU only (its affinity, a container's
// cpuset, a one-CPU machine) shares it with the peer it waits for whenever
// the peer runs there too (an os_process child inherits the affinity), and
// a spin that keeps the CPU then only waits for its own time slice or spin
// bound to end: 67-69 us per hop of an os_process ping-pong over shm under
// `taskset -c 0`, both sides parking in turn. Such a thread offers the CPU
// at each clock check of a spin once it has lasted kOfferAfterNs
// (sched_yield: a switch to the peer when it is runnable there, a fraction
// of a microsecond when nobody is): 6-8 us per hop. A thread that may run
// elsewhere waits longer first (kYieldAfterNs): session 9 measured that
// yielding in every spin (then with membarrier on) kept two processes that
// the kernel had placed on one CPU together for tens of milliseconds
// (csp-bench pingpong/shm, 2 vCPUs, no warm-up: 1.2-4.7 us per hop against
// 0.5-0.8 us).
constexpr std::int64_t kOfferAfterNs = 500;
// Any other thread offers its CPU once a spin has lasted kYieldAfterNs: a
// wait that long means the peer is not answering at once, and with more
// busy threads than CPUs (an os_process network of three processes on two
// CPUs, each spinning) the peer may be waiting for our CPU. Measured with
// membarrier off (CSP_SHM_MEMBARRIER): csp-bench commstime/shm (two
// os_process children) 35-45 -> 9.5-18 us per communication; ping-pong and
// streams, whose waits end sooner, unchanged (8 B hop 329-337 against
// 353-390 ns, 4 KiB 1,304-1,375 against 1,275 ns). Yielding at every check
// from the start cost a 4 KiB ping-pong hop 30% (a sched_yield in each
// short wait).
constexpr std::int64_t kYieldAfterNs = 2000;

// Whether the calling thread may run on one CPU only; learnt once per thread
// (a later change of its affinity is not seen: this only tunes a spin).
bool confined_to_one_cpu() noexcept {
  thread_local const bool one = [] {
    cpu_set_t set;
    return ::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1;
  }();
  return one;
}

void signal_fd(int efd) noexcept {
  const std::uint64_t one = 1;
  // Can only fail with EAGAIN on a counter near 2^64: the peer is awake then.
  [[maybe_unused]] ssize_t r = ::write(efd, &one, sizeof one);
}

bool drain_fd(int efd) noexcept {
  std::uint64_t count = 0;
  return ::read(efd, &count, sizeof count) == static_cast<ssize_t>(sizeof count);
}

// memcpy for any n, with the small sizes of frame headers and small values
// done inline (two overlapping fixed-size moves) instead of through a call
// to the library's size dispatch: worth about 10% on a stream of 64-byte
// writes.
inline void copy_bytes(unsigned char* dst, const unsigned char* src, std::size_t n) noexcept {
  if (n > 64) {
    std::memcpy(dst, src, n);
  } else if (n >= 32) {
    std::memcpy(dst, src, 32);
    std::memcpy(dst + n - 32, src + n - 32, 32);
  } else if (n >= 16) {
    std::memcpy(dst, src, 16);
    std::memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

void copy_in(unsigned char* ring, std::uint64_t capacity, std::uint64_t pos, const unsigned char* src,
             std::size_t n) noexcept {
  const std::size_t off = static_cast<std::size_t>(pos & (capacity - 1));
  const std::size_t first = std::min<std::size_t>(n, static_cast<std::size_t>(capacity) - off);
  copy_bytes(ring + off, src, first);
  if (first < n) copy_bytes(ring, src + first, n - first);
}

void copy_out(unsigned char* dst, const unsigned char* ring, std::uint64_t capacity, std::uint64_t pos,
              std::size_t n) noexcept {
  const std::size_t off = static_cast<std::size_t>(pos & (capacity - 1));
  const std::size_t first = std::min<std::size_t>(n, static_cast<std::size_t>(capacity) - off);
  copy_bytes(dst, ring + off, first);
  if (first < n) copy_bytes(dst + first, ring, n - first);
}

void close_fd(int& fd) noexcept {
  close_tracked(fd);
  fd = -1;
}

}  // namespace

// ---------------------------------------------------------------- spinning

// How long each wait spins: csp/detail/spin_budget.hpp (adaptive, learnt
// per direction).

// ---------------------------------------------------------------- ShmStream

ShmStream::ShmStream(std::shared_ptr<shm_detail::Segment> segment, int side, std::array<int, 4> events,
                     int lifeline, std::string description, const ShmOptions& options)
    : segment_(std::move(segment)), description_(std::move(description)) {
  shm_detail::Header* h = segment_->header();
  capacity_ = h->ring_bytes;
  const int out = side, in = 1 - side;
  out_ = &h->rings[out];
  out_data_ = segment_->ring_data(out);
  in_ = &h->rings[in];
  in_data_ = segment_->ring_data(in);
  peer_data_efd_ = events[2 * out];
  space_efd_ = events[2 * out + 1];
  data_efd_ = events[2 * in];
  peer_space_efd_ = events[2 * in + 1];
  lifeline_ = lifeline;
  out_head_ = out_->head.load(std::memory_order_acquire);
  out_tail_seen_ = out_->tail.load(std::memory_order_acquire);
  in_tail_ = in_->tail.load(std::memory_order_acquire);
  in_head_seen_ = in_->head.load(std::memory_order_acquire);
  const std::int64_t max_spin =
      options.max_spin ? std::max<std::int64_t>(0, options.max_spin->count()) : default_max_spin_ns();
  read_spin_.max_ns = max_spin;
  write_spin_.max_ns = max_spin;
  asymmetric_ = options.use_membarrier.value_or(membarrier_by_default()) && membarrier_ready();
  if (asymmetric_) {
    // From now on we barrier before parking on either ring.
    out_->producer_membarrier.store(1, std::memory_order_seq_cst);
    in_->consumer_membarrier.store(1, std::memory_order_seq_cst);
  }
}

ShmStream::~ShmStream() {
  close();
  close_fd(read_epfd_);
  close_fd(write_epfd_);
  close_fd(data_efd_);
  close_fd(space_efd_);
  close_fd(peer_data_efd_);
  close_fd(peer_space_efd_);
  close_fd(lifeline_);
}

void ShmStream::throw_error(const char* what) const { throw TransportError(description_ + ": " + what); }

void ShmStream::close() noexcept {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  // SYNC POINT with the acquire load of writer_closed in wait_for_data: every
  // head store of ours came before.
  out_->writer_closed.store(1, std::memory_order_release);
  // SYNC POINT with the acquire load of reader_closed in write_all /
  // wait_for_space.
  in_->reader_closed.store(1, std::memory_order_release);
  // Wake whoever is parked, unconditionally (close is rare; a stale count
  // only costs a spurious wake-up): the peer's reader and writer, and our
  // own reader and writer in other threads, which then see closed_.
  signal_fd(peer_data_efd_);
  signal_fd(peer_space_efd_);
  signal_fd(data_efd_);
  signal_fd(space_efd_);
}

bool ShmStream::lifeline_broken() noexcept {
  if (peer_gone_.load(std::memory_order_relaxed)) return true;
  if (lifeline_ < 0) return false;
  char c;
  ssize_t r = ::recv(lifeline_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    peer_gone_.store(true, std::memory_order_relaxed);
    return true;
  }
  return false;
}

// Wakes the peer's reader if it announced it is parking on `out_`.
void ShmStream::wake_reader() noexcept {
  // SYNC POINT (Dekker) with the flag store and head load in the peer's
  // wait_for_data: our seq_cst head store came before this load.
  if (out_->reader_sleeping.load(std::memory_order_seq_cst) != 0 &&
      out_->reader_sleeping.exchange(0, std::memory_order_seq_cst) != 0)
    signal_fd(peer_data_efd_);
}

// Wakes the peer's writer if it is parking on `in_` and now has the space it
// asked for (our head_seen may be stale: that over-states the space, so at
// worst it wakes early and parks again; it never misses the wake).
void ShmStream::wake_writer() noexcept {
  // SYNC POINT (Dekker) with the flag store and tail load in the peer's
  // wait_for_space: our seq_cst tail store came before this load. Being
  // seq_cst it also acquires the space_wanted stored before the flag.
  if (in_->writer_sleeping.load(std::memory_order_seq_cst) == 0) return;
  const std::uint64_t free = capacity_ - (in_head_seen_ - in_tail_);
  if (free >= in_->space_wanted.load(std::memory_order_relaxed) &&
      in_->writer_sleeping.exchange(0, std::memory_order_seq_cst) != 0)
    signal_fd(peer_space_efd_);
}

void ShmStream::write_all(const void* data, std::size_t n) {
  const ConstBuffer part{data, n};
  write_all_v(&part, 1);
}

void ShmStream::publish() noexcept {
  if (!light_publish_ && asymmetric_)
    light_publish_ = out_->consumer_membarrier.load(std::memory_order_relaxed) != 0;
  // SYNC POINT with the acquire loads of head in read_some and
  // wait_for_data: the bytes copied before are visible once head is.
  if (light_publish_) {
    out_->head.store(out_head_, std::memory_order_release);
    // Light half of the asymmetric barrier (the reader's membarrier is the
    // heavy half): only the compiler must keep the flag load after the store.
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    // seq_cst for the Dekker pairing in wake_reader.
    out_->head.store(out_head_, std::memory_order_seq_cst);
  }
  wake_reader();
}

void ShmStream::write_all_v(const ConstBuffer* parts, std::size_t count) {
  if (closed_.load(std::memory_order_relaxed)) throw_error("write on a closed stream");
  // SYNC POINT with the release store in the peer's close().
  if (out_->reader_closed.load(std::memory_order_acquire) != 0) throw_error("the peer closed the stream");
  // Known only once a wait saw the lifeline break; until then bytes written
  // to a dead peer go into the ring (they would be lost with it anyway).
  if (peer_gone_.load(std::memory_order_relaxed)) throw_error("the peer process is gone");
  std::size_t unpublished = 0;  // bytes copied in since the last head store
  for (std::size_t i = 0; i < count; ++i) {
    const auto* src = static_cast<const unsigned char*>(parts[i].data);
    std::size_t n = parts[i].size;
    while (n != 0) {
      std::uint64_t used = out_head_ - out_tail_seen_;
      if (capacity_ - used < n) {
        // SYNC POINT with the release store of tail in read_some: the
        // bytes it freed are no longer read.
        out_tail_seen_ = out_->tail.load(std::memory_order_acquire);
        used = out_head_ - out_tail_seen_;
        if (used > capacity_) throw_error("corrupt ring indices (is the peer csp?)");
        if (used == capacity_) {
          if (unpublished != 0) {  // the reader must see these before we wait
            publish();
            unpublished = 0;
          }
          switch (wait_for_space(std::min<std::uint64_t>(n, capacity_ / 2))) {
            case Wait::ready:
              continue;
            case Wait::peer_gone:
              throw_error("the peer process is gone");
            case Wait::closed:
              if (closed_.load(std::memory_order_relaxed)) throw_error("write on a closed stream");
              throw_error("the peer closed the stream");
            case Wait::timed_out:
              break;  // writes have no deadline
          }
        }
      }
      const std::size_t chunk =
          std::min<std::size_t>({n, static_cast<std::size_t>(capacity_ - used), kPublishChunk});
      copy_in(out_data_, capacity_, out_head_, src, chunk);
      out_head_ += chunk;
      src += chunk;
      n -= chunk;
      unpublished += chunk;
      if (unpublished >= kPublishChunk) {  // let the reader start copying out
        publish();
        unpublished = 0;
      }
    }
  }
  if (unpublished != 0) publish();
}

std::vector<int> ShmStream::fds() const {
  std::vector<int> out;
  for (int fd : {data_efd_, space_efd_, peer_data_efd_, peer_space_efd_, lifeline_, read_epfd_, write_epfd_})
    if (fd >= 0) out.push_back(fd);
  return out;
}

std::optional<std::size_t> ShmStream::read_some(void* data, std::size_t n, Deadline deadline) {
  if (n == 0) return 0;
  auto* dst = static_cast<unsigned char*>(data);
  for (;;) {
    if (closed_.load(std::memory_order_relaxed)) return 0;
    std::uint64_t avail = in_head_seen_ - in_tail_;
    if (avail == 0) {
      // SYNC POINT with the release store of head in write_all.
      in_head_seen_ = in_->head.load(std::memory_order_acquire);
      avail = in_head_seen_ - in_tail_;
      if (avail > capacity_) throw_error("corrupt ring indices (is the peer csp?)");
      if (avail == 0) {
        switch (wait_for_data(deadline)) {
          case Wait::ready:
            continue;
          case Wait::timed_out:
            return std::nullopt;
          case Wait::peer_gone:
          case Wait::closed:
            return 0;
        }
      }
    }
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n, avail));
    for (std::size_t done = 0; done < want;) {
      const std::size_t chunk = std::min(want - done, kPublishChunk);
      copy_out(dst + done, in_data_, capacity_, in_tail_, chunk);
      in_tail_ += chunk;
      done += chunk;
      release_read();
    }
    return want;
  }
}

void ShmStream::release_read() noexcept {
  if (!light_release_ && asymmetric_)
    light_release_ = in_->producer_membarrier.load(std::memory_order_relaxed) != 0;
  // SYNC POINT with the acquire load of tail in write_all_v and
  // wait_for_space: we are done reading these bytes.
  if (light_release_) {
    in_->tail.store(in_tail_, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // light half, as in publish()
  } else {
    in_->tail.store(in_tail_, std::memory_order_seq_cst);  // Dekker with wake_writer
  }
  wake_writer();
}

ShmStream::Wait ShmStream::wait_for_data(Deadline deadline) {
  // When the wait began; read lazily (after the first 16 polls) for an
  // unbounded wait, so an answer that comes quickly costs no clock read.
  csp::detail::Clock::time_point start{};
  std::int64_t limit = read_spin_.next_limit_ns();
  if (deadline != csp::detail::forever) {
    start = csp::detail::Clock::now();
    if (deadline <= start) limit = 0;
  }
  // Spin: the peer is probably about to write.
  const bool in_coroutine = csp::detail::in_coroutine();
  for (unsigned i = 1; limit > 0; ++i) {
    if (in_->head.load(std::memory_order_relaxed) != in_tail_) {
      read_spin_.learn(0);  // caught within the bound
      return Wait::ready;
    }
    if (in_->writer_closed.load(std::memory_order_relaxed) != 0 || closed_.load(std::memory_order_relaxed))
      break;
    cpu_relax();
    if (i % 16 == 0) {
      const auto now = csp::detail::Clock::now();
      if (start == csp::detail::Clock::time_point{}) start = now;
      const std::int64_t spun = ns_between(start, now);
      if (spun >= limit || now >= deadline) break;
      if (spun >= (confined_to_one_cpu() ? kOfferAfterNs : kYieldAfterNs)) ::sched_yield();
    }
    if (i % 4 == 0 && in_coroutine) csp::yield();  // let this worker's other processes run
  }
  if (start == csp::detail::Clock::time_point{}) start = csp::detail::Clock::now();
  // Park: announce, re-check, sleep on the eventfd and the lifeline.
  for (;;) {
    // SYNC POINT (Dekker) with the head store and flag load in the peer's
    // publish / wake_reader.
    in_->reader_sleeping.store(1, std::memory_order_seq_cst);
    // Heavy half of the asymmetric barrier, for a peer publishing light.
    const bool sure = !asymmetric_ || heavy_barrier();
    // SYNC POINT with the release store of writer_closed in the peer's
    // close(); loaded before head, so an empty ring after it is final.
    const bool writer_closed = in_->writer_closed.load(std::memory_order_acquire) != 0;
    const bool data = in_->head.load(std::memory_order_seq_cst) != in_tail_;
    if (data || writer_closed || closed_.load(std::memory_order_relaxed) ||
        peer_gone_.load(std::memory_order_relaxed)) {
      in_->reader_sleeping.store(0, std::memory_order_seq_cst);
      if (data) {
        read_spin_.learn(ns_between(start, csp::detail::Clock::now()));
        return Wait::ready;
      }
      if (writer_closed || closed_.load(std::memory_order_relaxed)) return Wait::closed;
      return Wait::peer_gone;
    }
    const Wait w = park(data_efd_, read_epfd_,
                        sure ? deadline : std::min(deadline, csp::detail::Clock::now() + kUnsureParkLimit),
                        "shm read");
    in_->reader_sleeping.store(0, std::memory_order_seq_cst);
    if (w == Wait::timed_out) {
      if (in_->head.load(std::memory_order_acquire) != in_tail_) return Wait::ready;
      if (csp::detail::Clock::now() >= deadline) return Wait::timed_out;
    }
    // Woken (or the lifeline broke): the loop re-checks the ring first, so
    // what the peer wrote before dying is still read.
  }
}

ShmStream::Wait ShmStream::wait_for_space(std::uint64_t wanted) {
  csp::detail::Clock::time_point start{};  // read lazily, as in wait_for_data
  auto has_space = [&](std::uint64_t need) {
    // SYNC POINT with the tail store in the peer's read_some (seq_cst for
    // the Dekker pairing below).
    out_tail_seen_ = out_->tail.load(std::memory_order_seq_cst);
    return capacity_ - (out_head_ - out_tail_seen_) >= need;
  };
  const std::int64_t limit = write_spin_.next_limit_ns();
  const bool in_coroutine = csp::detail::in_coroutine();
  for (unsigned i = 1; limit > 0; ++i) {
    if (has_space(1)) {
      write_spin_.learn(0);  // caught within the bound
      return Wait::ready;
    }
    if (out_->reader_closed.load(std::memory_order_relaxed) != 0 || closed_.load(std::memory_order_relaxed))
      break;
    cpu_relax();
    if (i % 16 == 0) {
      const auto now = csp::detail::Clock::now();
      if (start == csp::detail::Clock::time_point{}) start = now;
      const std::int64_t spun = ns_between(start, now);
      if (spun >= limit) break;
      if (spun >= (confined_to_one_cpu() ? kOfferAfterNs : kYieldAfterNs)) ::sched_yield();
    }
    if (i % 4 == 0 && in_coroutine) csp::yield();
  }
  if (start == csp::detail::Clock::time_point{}) start = csp::detail::Clock::now();
  for (;;) {
    out_->space_wanted.store(wanted, std::memory_order_relaxed);
    // SYNC POINT (Dekker) with the tail store and flag load in the peer's
    // release_read / wake_writer; also publishes space_wanted to that load.
    out_->writer_sleeping.store(1, std::memory_order_seq_cst);
    // Heavy half of the asymmetric barrier, for a peer releasing light.
    const bool sure = !asymmetric_ || heavy_barrier();
    const bool reader_closed = out_->reader_closed.load(std::memory_order_acquire) != 0;
    // The peer wakes us once `wanted` bytes are free (at the latest when it
    // has read everything), so parking with less than that free is safe.
    const bool space = has_space(wanted);
    if (space || reader_closed || closed_.load(std::memory_order_relaxed) ||
        peer_gone_.load(std::memory_order_relaxed)) {
      out_->writer_sleeping.store(0, std::memory_order_seq_cst);
      if (space) {
        write_spin_.learn(ns_between(start, csp::detail::Clock::now()));
        return Wait::ready;
      }
      if (reader_closed || closed_.load(std::memory_order_relaxed)) return Wait::closed;
      return Wait::peer_gone;
    }
    park(space_efd_, write_epfd_, sure ? csp::detail::forever : csp::detail::Clock::now() + kUnsureParkLimit,
         "shm write");
    out_->writer_sleeping.store(0, std::memory_order_seq_cst);
    if (has_space(1)) {
      write_spin_.learn(ns_between(start, csp::detail::Clock::now()));
      return Wait::ready;
    }
  }
}

ShmStream::Wait ShmStream::park(int efd, int& epfd, Deadline deadline, const char* what) {
  if (!csp::detail::in_coroutine()) {
    // A thread blocks in ppoll on both fds at once.
    pollfd fds[2] = {{efd, POLLIN, 0}, {lifeline_, POLLIN, 0}};
    const nfds_t count = lifeline_ >= 0 ? 2 : 1;
    timespec ts{};
    timespec* timeout = nullptr;
    if (deadline != csp::detail::forever) {
      const std::int64_t left = ns_between(csp::detail::Clock::now(), deadline);
      if (left <= 0) return Wait::timed_out;
      ts.tv_sec = static_cast<time_t>(left / 1000000000);
      ts.tv_nsec = static_cast<long>(left % 1000000000);
      timeout = &ts;
    }
    const bool traced = csp::detail::trace_active();  // CSP_TRACE (csp/trace.hpp)
    const std::int64_t begin = traced ? csp::detail::trace_now_ns() : 0;
    int r = ::ppoll(fds, count, timeout, nullptr);
    if (traced) csp::detail::trace_poll_wait(what, begin, r != 0);
    if (r == 0) return Wait::timed_out;
    if (r < 0) {
      if (errno == EINTR) return Wait::ready;  // the caller re-checks
      throw_error("ppoll failed");
    }
    if (fds[0].revents != 0) drain_fd(efd);
    if (count == 2 && fds[1].revents != 0 && lifeline_broken()) return Wait::peer_gone;
    return Wait::ready;
  }
  // A coroutine parks in its worker's reactor, on an epoll set holding the
  // eventfd and the lifeline (wait_fd watches one fd).
  if (epfd < 0) {
    epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) throw TransportError(description_ + ": epoll_create1: " + std::strerror(errno));
    track_fd(epfd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = efd;
    int r = ::epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev);
    if (r == 0 && lifeline_ >= 0) {
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = lifeline_;
      r = ::epoll_ctl(epfd, EPOLL_CTL_ADD, lifeline_, &ev);
    }
    if (r != 0) {
      const int e = errno;
      close_fd(epfd);
      throw TransportError(description_ + ": epoll_ctl: " + std::strerror(e));
    }
  }
  if (!csp::detail::wait_fd(epfd, EPOLLIN, deadline, what)) return Wait::timed_out;
  if (drain_fd(efd)) return Wait::ready;
  if (lifeline_broken()) return Wait::peer_gone;
  return Wait::ready;
}

// ---------------------------------------------------------------- links

namespace {

std::array<int, 4> make_eventfds() {
  std::array<int, 4> fds{-1, -1, -1, -1};
  for (int& fd : fds) {
    fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      for (int& f : fds) close_fd(f);
      errno = e;
      shm_detail::fail("eventfd");
    }
    track_fd(fd);
  }
  return fds;
}

std::array<int, 2> make_lifeline() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) shm_detail::fail("socketpair");
  track_fd(sv[0]);
  track_fd(sv[1]);
  return {sv[0], sv[1]};
}

std::shared_ptr<shm_detail::Segment> make_private_segment(const ShmOptions& options) {
  int memfd = -1;
  auto seg = shm_detail::create_segment(options, memfd);
  close_tracked(memfd);  // the mapping is all a fork child or this process needs
  return seg;
}

class ShmForkLink final : public ForkLink {
 public:
  explicit ShmForkLink(const ShmOptions& options)
      : options_(options), segment_(make_private_segment(options)), events_(make_eventfds()) {
    try {
      lifeline_ = make_lifeline();
    } catch (...) {
      for (int& fd : events_) close_fd(fd);
      throw;
    }
    description_ = "shm:/" + segment_->name;
  }
  ~ShmForkLink() override {
    for (int& fd : events_) close_fd(fd);
    for (int& fd : lifeline_) close_fd(fd);
  }
  std::unique_ptr<ByteStream> parent_end() override { return take(0); }
  std::unique_ptr<ByteStream> child_end() override { return take(1); }

 private:
  std::unique_ptr<ByteStream> take(int side) {
    if (!segment_) throw TransportError(description_ + ": fork link end taken twice");
    // Our copy of the other side's lifeline end must go, or the other's
    // death would never show as EOF here.
    close_fd(lifeline_[1 - side]);
    auto stream = std::make_unique<ShmStream>(std::move(segment_), side, events_, lifeline_[side],
                                              description_, options_);
    events_ = {-1, -1, -1, -1};
    lifeline_[side] = -1;
    return stream;
  }

  ShmOptions options_;
  std::shared_ptr<shm_detail::Segment> segment_;  // moved into the end taken
  std::array<int, 4> events_;                     // eventfds, inherited by the child
  std::array<int, 2> lifeline_{-1, -1};           // [0] parent's end, [1] child's
  std::string description_;
};

}  // namespace

std::unique_ptr<ForkLink> make_shm_fork_link(const ShmOptions& options) {
  return std::make_unique<ShmForkLink>(options);
}

std::unique_ptr<ForkLink> make_shm_fork_link() { return make_shm_fork_link(ShmOptions{}); }

std::pair<std::unique_ptr<ShmStream>, std::unique_ptr<ShmStream>> make_shm_pair(const ShmOptions& options) {
  auto segment = make_private_segment(options);
  std::array<int, 4> events = make_eventfds();
  std::array<int, 4> copies{-1, -1, -1, -1};
  std::array<int, 2> lifeline{-1, -1};
  try {
    for (int i = 0; i < 4; ++i) {
      copies[i] = ::fcntl(events[i], F_DUPFD_CLOEXEC, 0);
      if (copies[i] < 0) shm_detail::fail("dup");
      track_fd(copies[i]);
    }
    lifeline = make_lifeline();
  } catch (...) {
    for (int& fd : events) close_fd(fd);
    for (int& fd : copies) close_fd(fd);
    throw;
  }
  const std::string description = "shm:/" + segment->name;
  auto first = std::make_unique<ShmStream>(segment, 0, events, lifeline[0], description, options);
  auto second = std::make_unique<ShmStream>(std::move(segment), 1, copies, lifeline[1], description, options);
  return {std::move(first), std::move(second)};
}

}  // namespace csp::transport_detail
