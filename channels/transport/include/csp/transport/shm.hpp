// csp/transport/shm.hpp: the shared-memory byte stream between OS processes
// on one host: a pair of single-producer single-consumer byte rings (one per
// direction) in one shared segment, with eventfd wake-ups in the worker's
// epoll reactor.
//
// How it is built, and why:
// - The segment is a memfd (memfd_create + ftruncate + mmap, sealed against
//   resizing), not a Boost.Interprocess or shm_open object: a memfd has no
//   name in /dev/shm at all, so nothing is left behind even when both
//   processes are SIGKILLed, and its fd can be handed to an unrelated process
//   with SCM_RIGHTS. Boost.Interprocess needs a named object (and brings an
//   allocator we do not need). The memfd's name ("csp-shm-<random hex>",
//   shown only in /proc/<pid>/fd and in messages) is unpredictable.
// - Wake-ups: a reader that finds its ring empty spins for a short, adaptive
//   while (re-learned on every wait, at most ShmOptions::max_spin), then
//   announces in shared memory that it is going to sleep, re-checks the ring
//   (Dekker-style, so no wake-up is lost) and parks on an eventfd; a writer
//   writes that eventfd only when the reader announced sleeping. A writer
//   facing a full ring does the same the other way round. Coroutines park in
//   their worker's epoll reactor (csp::detail::wait_fd), threads in ppoll(2):
//   blocking never blocks a worker thread. The store-then-load handshake
//   needs a full barrier on both sides (seq_cst operations). Optionally
//   (ShmOptions::use_membarrier), where the kernel offers
//   membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), the parking side runs it
//   and the publishing side needs none (see shm_stream.cpp, "Asymmetric
//   barriers"); off by default, since each park then interrupts every CPU.
// - Peer death: the two sides hold the ends of a unix socket (the "lifeline")
//   that carries no data; the kernel closes a dead process's end, and a
//   parked reader or writer waits on it together with its eventfd. So a
//   blocked read returns 0 (end of stream) and a blocked write throws
//   csp::TransportError within microseconds of a SIGKILL. A descendant
//   forked by the peer inherits the lifeline (as it would a pipe), so the
//   peer then counts as alive until that descendant exits or closes it.
//
// Every function here throws csp::TransportError (a csp::Error) naming
// "shm" and the segment or address when the OS refuses a resource or the
// peer breaks the protocol.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <csp/detail/spin_budget.hpp>
#include <csp/transport/stream.hpp>

namespace csp::transport_detail {

/// Tuning of a shared-memory stream.
struct ShmOptions {
  /// Bytes of ring per direction; rounded up to a power of two, at least
  /// 4 KiB. Writes larger than the ring are streamed through it in pieces.
  std::size_t ring_bytes = std::size_t{1} << 20;
  /// Longest a blocked read or write spins before it parks. After a few
  /// waits in a row longer than this (a slow peer) it spins only 2 us, with
  /// a full spin every 8th wait to notice when the peer is quick again.
  /// Unset: the environment's CSP_SHM_SPIN_US (microseconds), else 50 us,
  /// a little above the eventfd wake-up latency measured on the 2-vCPU VM
  /// (25-45 us): a bound below the wake-up latency lets one hiccup turn a
  /// ping-pong into both sides parking on every message. Zero parks at once
  /// (every wake-up then goes through the eventfd).
  std::optional<std::chrono::nanoseconds> max_spin;
  /// Let a parking side pay for the wake-up handshake with
  /// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), so that publishing bytes
  /// needs no full barrier. Used only where the kernel offers it, and only
  /// between two sides that both agree; false keeps this side on seq_cst
  /// operations. Unset: CSP_SHM_MEMBARRIER=1 turns it on, else off. Off by
  /// default because every park then interrupts every CPU running one of
  /// our processes (an IPI, a VM exit on a VM), and the waits that park are
  /// the ones where that hurts most: on the 2-vCPU VM, commstime with two
  /// os_process children went from 62-73 to 41-47 us per communication
  /// without it (csp-bench, 2 alternated rounds), and a spinning ping-pong
  /// or stream did not measurably gain from it.
  std::optional<bool> use_membarrier;
};

namespace shm_detail {
struct RingControl;  // one direction's indices and flags (shm_stream.cpp)
struct Segment;      // a mapped segment (shm_stream.cpp)

/// Internal, for the rendezvous of shm:// addresses: a fresh segment
/// (memfd, sealed, mapped, header written) with two rings of
/// `options.ring_bytes`, and its memfd (owned by the caller).
std::shared_ptr<Segment> create_segment(const ShmOptions& options, int& memfd_out);
/// Internal: maps a segment received from a peer and checks its header;
/// takes ownership of `memfd` (closed once mapped).
std::shared_ptr<Segment> attach_segment(int memfd);
/// Internal: the memfd name of a segment ("csp-shm-1a2b...").
const std::string& segment_name(const Segment& segment) noexcept;
/// Internal: bytes of ring per direction of a segment.
std::size_t segment_ring_bytes(const Segment& segment) noexcept;
}  // namespace shm_detail

/// One side of a shared-memory stream (a ByteStream: see stream.hpp for the
/// contract). Made by make_shm_fork_link(), make_shm_pair(),
/// ShmListener::accept() or shm_connect(), never directly by users.
///
/// Beyond the ByteStream contract:
/// - read_some() returns whatever the ring holds (up to n) without
///   waiting for more; at end of stream (the peer closed, or its process is
///   gone) it returns 0 once everything the peer wrote has been read.
/// - write_all() throws TransportError when the peer closed its side or its
///   process is gone; bytes written before that may be lost with the peer.
/// - close() also ends this side: later reads return 0 and later writes
///   throw; a read or write blocked in another thread of this process is
///   woken and does the same. The mapping and fds are released by the
///   destructor, so close() may run while another thread uses the stream.
class ShmStream final : public ByteStream {
 public:
  /// Internal: side `side` (0 = creator: parent or host; 1 = the other) of a
  /// segment. `events` are the eventfds of ring r: events[2r] is written
  /// when ring r gets data, events[2r+1] when it gets space. `lifeline` is
  /// this side's end of the socket whose EOF means the peer is gone (-1:
  /// none). Takes ownership of every fd.
  ShmStream(std::shared_ptr<shm_detail::Segment> segment, int side, std::array<int, 4> events,
            int lifeline, std::string description, const ShmOptions& options);
  ~ShmStream() override;
  ShmStream(const ShmStream&) = delete;
  ShmStream& operator=(const ShmStream&) = delete;

  void write_all(const void* data, std::size_t n) override;
  /// Copies all parts into the ring and publishes them together (one
  /// wake-up check for a frame header and its payload).
  void write_all_v(const ConstBuffer* parts, std::size_t count) override;
  std::optional<std::size_t> read_some(void* data, std::size_t n, Deadline deadline) override;
  void close() noexcept override;
  [[nodiscard]] std::string describe() const override { return description_; }
  /// The eventfds, the lifeline and the epoll sets made so far (the mapping
  /// needs no fd).
  [[nodiscard]] std::vector<int> fds() const override;

  /// Bytes of ring per direction.
  [[nodiscard]] std::size_t ring_bytes() const noexcept { return static_cast<std::size_t>(capacity_); }

 private:
  // Spin-then-park bookkeeping of one waiting role (reader or writer).
  using SpinBudget = csp::detail::SpinBudget;  // csp/detail/spin_budget.hpp
  enum class Wait { ready, timed_out, peer_gone, closed };

  Wait wait_for_data(Deadline deadline);
  Wait wait_for_space(std::uint64_t wanted);
  // Parks on `efd` and the lifeline until one is readable or the deadline
  // passes; `epfd` is the lazily made epoll set holding both (coroutines).
  Wait park(int efd, int& epfd, Deadline deadline, const char* what);
  bool lifeline_broken() noexcept;
  [[noreturn]] void throw_error(const char* what) const;
  void publish() noexcept;
  void release_read() noexcept;
  void wake_reader() noexcept;
  void wake_writer() noexcept;

  std::shared_ptr<shm_detail::Segment> segment_;  // keeps the mapping alive
  std::uint64_t capacity_ = 0;                    // ring bytes (power of two)
  std::string description_;                       // "shm:/csp-shm-..." for messages

  // Writer side: ring `out_`, touched only by the (one) writing thread.
  alignas(64) shm_detail::RingControl* out_ = nullptr;
  unsigned char* out_data_ = nullptr;
  std::uint64_t out_head_ = 0;        // our copy of out_->head (we are its only writer)
  std::uint64_t out_tail_seen_ = 0;   // last out_->tail loaded (stale is safe: less space)
  SpinBudget write_spin_;
  int write_epfd_ = -1;               // epoll set {space eventfd, lifeline}, made on first park
  bool light_publish_ = false;        // the peer barriers before parking: publish with release

  // Reader side: ring `in_`, touched only by the (one) reading thread.
  alignas(64) shm_detail::RingControl* in_ = nullptr;
  unsigned char* in_data_ = nullptr;
  std::uint64_t in_tail_ = 0;         // our copy of in_->tail (we are its only writer)
  std::uint64_t in_head_seen_ = 0;    // last in_->head loaded (stale is safe: less data)
  SpinBudget read_spin_;
  int read_epfd_ = -1;                // epoll set {data eventfd, lifeline}, made on first park
  bool light_release_ = false;        // the peer barriers before parking: free with release

  alignas(64) int data_efd_ = -1;     // we wait on it: `in_` got data
  int space_efd_ = -1;                // we wait on it: `out_` got space
  int peer_data_efd_ = -1;            // we write it: `out_` got data
  int peer_space_efd_ = -1;           // we write it: `in_` got space
  int lifeline_ = -1;                 // EOF when the peer process is gone
  bool asymmetric_ = false;           // we barrier (membarrier) before parking; set once
  std::atomic<bool> closed_{false};   // close() was called on this side
  std::atomic<bool> peer_gone_{false};  // the lifeline reported EOF
};

/// A shared-memory link for a child about to be forked: the segment,
/// eventfds and lifeline exist before fork(), the child inherits the
/// mapping, and nothing has a name in /dev/shm. After fork() the parent
/// calls parent_end(), the child child_end() (each at most once); each
/// closes the lifeline end of the other side, so the death of either is
/// seen. Every fd is registered with track_fd(). Throws TransportError if
/// the OS refuses a resource. (make_shm_fork_link() with default options
/// is declared in stream.hpp.)
std::unique_ptr<ForkLink> make_shm_fork_link(const ShmOptions& options);

/// Both ends of one shared-memory stream in this process (tests, and
/// in-process measurement). first is side 0, second side 1.
std::pair<std::unique_ptr<ShmStream>, std::unique_ptr<ShmStream>> make_shm_pair(
    const ShmOptions& options = {});

/// The host side of `shm://name` addresses between unrelated programs of the
/// same user on this host.
///
/// Rendezvous: a unix SOCK_SEQPACKET socket bound in the abstract namespace
/// as "@csp-shm:<name>" (no file anywhere; it vanishes with the process).
/// For each connection accept() makes a fresh segment and eventfds and hands
/// them to the connecting process with SCM_RIGHTS; the connection then stays
/// open as the lifeline. Only processes of the same effective uid are
/// accepted (SO_PEERCRED), as a 0600 file would allow; abstract sockets are
/// per network namespace, so both programs must share one.
class ShmListener final : public Listener {
 public:
  /// Starts hosting `name` (1 to 90 bytes, no NUL). Throws TransportError
  /// if another listener (in any process) hosts it already.
  explicit ShmListener(std::string_view name, const ShmOptions& options = {});
  ~ShmListener() override;
  ShmListener(const ShmListener&) = delete;
  ShmListener& operator=(const ShmListener&) = delete;

  /// Waits for the next connection and returns the host's side of its
  /// stream; nullptr when the deadline passes first or close() was called.
  /// Parks the calling process (coroutine or thread), never its worker. A
  /// connection that fails the handshake (another uid, a peer that went
  /// away or is not csp) is dropped and accept() waits for the next.
  std::unique_ptr<ByteStream> accept(Deadline deadline) override;
  /// Refuses new connections and wakes a blocked accept() (which returns
  /// nullptr); idempotent. The name is free again once the listener is
  /// destroyed (nothing was put in the file system).
  void close() noexcept override;
  /// "shm://name".
  [[nodiscard]] std::string describe() const override;
  [[nodiscard]] std::vector<int> fds() const override { return {listen_fd_}; }

 private:
  std::string name_;                  // the address's name
  ShmOptions options_;                // for the segments it makes
  int listen_fd_ = -1;                // the rendezvous socket
  std::atomic<bool> closed_{false};   // close() was called
};

/// shm_listen(name) (declared in stream.hpp) makes a ShmListener with
/// default options; this one takes options.
std::unique_ptr<Listener> shm_listen(std::string_view name, const ShmOptions& options);

/// Connects to `shm://name` hosted by a ShmListener in another process (or
/// this one) and returns this side of the stream. Retries (parked, backing
/// off up to 50 ms) while nobody hosts the name; returns nullptr when the
/// deadline passes before the host has accepted. Throws TransportError when
/// the host's handshake is malformed or of another protocol version. Parks
/// the calling process, never its worker. (Declared in stream.hpp.)
std::unique_ptr<ByteStream> shm_connect(std::string_view name, Deadline deadline);

}  // namespace csp::transport_detail
