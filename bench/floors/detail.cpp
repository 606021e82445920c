// detail.cpp: checks, buffers, pinning, forked children, fd I/O and shm
// segments shared by the floors.
#include "detail.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>

namespace cspbench::floors::detail {

void fail(const char* what, const char* file, int line) {
  throw Failure(std::string(what) + " (" + file + ":" + std::to_string(line) + ")");
}

void fail_errno(const char* what, const char* file, int line) {
  const int err = errno;
  throw Failure(std::string(what) + ": " + std::strerror(err) + " (" + file + ":" +
                std::to_string(line) + ")");
}

void check_size(std::size_t size) {
  if (size < kMinSize) throw Failure("message size " + std::to_string(size) + " is below 8 bytes");
}

// ------------------------------------------------------------------ buffers

PageBuf::PageBuf(std::size_t size, unsigned char fill)
    : size_(size),
      data_(static_cast<unsigned char*>(std::aligned_alloc(4096, (size + 4095) / 4096 * 4096))) {
  if (!data_) throw Failure("out of memory for a " + std::to_string(size) + "-byte buffer");
  std::memset(data_, fill, size);
}

PageBuf::~PageBuf() { std::free(data_); }

void stamp(unsigned char* msg, std::size_t size, std::uint64_t seq) {
  std::memcpy(msg, &seq, 8);
  if (size >= 16) {
    const std::uint64_t inv = ~seq;
    std::memcpy(msg + size - 8, &inv, 8);
  }
}

bool stamp_is(const unsigned char* msg, std::size_t size, std::uint64_t seq) {
  std::uint64_t a = 0, b = ~seq;
  std::memcpy(&a, msg, 8);
  if (size >= 16) std::memcpy(&b, msg + size - 8, 8);
  return a == seq && b == ~seq;
}

// ------------------------------------------------------------------ pinning

bool pin_cpus(int& parent_cpu, int& child_cpu) {
  const char* pin = std::getenv("PIN");
  if (pin && std::strcmp(pin, "0") == 0) return false;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return false;
  int found = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    (found == 0 ? parent_cpu : child_cpu) = cpu;
    ++found;
  }
  return found == 2;
}

static void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  FLOOR_SYS(sched_setaffinity(0, sizeof set, &set));
}

PinScope::PinScope(int cpu) {
  if (cpu < 0) return;
  FLOOR_SYS(sched_getaffinity(0, sizeof saved_, &saved_));
  pin_self(cpu);
  active_ = true;
}

PinScope::~PinScope() {
  if (active_) sched_setaffinity(0, sizeof saved_, &saved_);
}

// ------------------------------------------------------------------ children

Child::Child(const std::function<void()>& body, int cpu) {
  const pid_t parent = getpid();
  std::fflush(nullptr);  // nothing buffered may be written twice
  pid_ = fork();
  if (pid_ < 0) fail_errno("fork", __FILE__, __LINE__);
  if (pid_ > 0) return;
  // Child: never returns into the caller's stack frames.
  int status = 0;
  try {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail_errno("prctl", __FILE__, __LINE__);
    if (getppid() != parent) _exit(3);  // parent died before prctl
    if (cpu >= 0) pin_self(cpu);
    body();
  } catch (const std::exception& e) {
    const std::string msg = std::string("csp-bench floor child: ") + e.what() + "\n";
    (void)!write(2, msg.data(), msg.size());
    status = 2;
  } catch (...) {
    status = 2;
  }
  _exit(status);
}

Child::~Child() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void Child::join() {
  if (pid_ <= 0) return;
  int st = 0;
  pid_t r;
  while ((r = waitpid(pid_, &st, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0) fail_errno("waitpid", __FILE__, __LINE__);
  pid_ = -1;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
  if (WIFSIGNALED(st))
    throw Failure(std::string("floor child killed by signal ") + strsignal(WTERMSIG(st)));
  throw Failure("floor child failed with exit status " + std::to_string(WEXITSTATUS(st)));
}

bool Child::alive() const {
  if (pid_ <= 0) return false;
  siginfo_t info{};
  if (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;  // 0: no state change yet
}

void Child::check_alive() const {
  if (pid_ <= 0) throw Failure("floor child already reaped");
  siginfo_t info{};
  if (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    fail_errno("waitid", __FILE__, __LINE__);
  if (info.si_pid == 0) return;  // still running
  if (info.si_code == CLD_EXITED)
    throw Failure("floor child exited early with status " + std::to_string(info.si_status));
  throw Failure(std::string("floor child died of signal ") + strsignal(info.si_status));
}

// -------------------------------------------------------------------- fd I/O

void write_all(int fd, const void* p, std::size_t len) {
  auto* c = static_cast<const unsigned char*>(p);
  while (len) {
    const ssize_t w = write(fd, c, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail_errno("write", __FILE__, __LINE__);
    c += w;
    len -= std::size_t(w);
  }
}

void read_all(int fd, void* p, std::size_t len) {
  auto* c = static_cast<unsigned char*>(p);
  while (len) {
    const ssize_t r = read(fd, c, len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail_errno("read", __FILE__, __LINE__);
    if (r == 0) throw Failure("peer closed the connection early");
    c += r;
    len -= std::size_t(r);
  }
}

void send_u64(int fd, std::uint64_t v) { write_all(fd, &v, 8); }

std::uint64_t recv_u64(int fd) {
  std::uint64_t v = 0;
  read_all(fd, &v, 8);
  return v;
}

void wait_readable(int fd, const Child& peer) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, 100);
    if (r > 0) return;
    if (r < 0 && errno != EINTR) fail_errno("poll", __FILE__, __LINE__);
    peer.check_alive();
  }
}

Fd::~Fd() { reset(); }

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

// ----------------------------------------------------------------------- shm

namespace {
// Names of live segments, read by unlink_live_segments() from a signal
// handler: a slot is claimed by CAS on `used` (0 -> 1), its name written, then
// `used` set to 2 (release) so the handler only reads complete names.
struct LiveSlot {
  std::atomic<int> used{0};  // 0 free, 1 being written, 2 holds a name
  char name[64] = {};
};
LiveSlot g_live[8];
std::atomic<unsigned> g_counter{0};
}  // namespace

ShmSegment::ShmSegment(std::size_t bytes) : bytes_(bytes) {
  std::snprintf(name_, sizeof name_, "/csp-bench-%d-%u", int(getpid()),
                g_counter.fetch_add(1, std::memory_order_relaxed));
  for (int i = 0; i < int(std::size(g_live)); ++i) {
    int expected = 0;
    if (g_live[i].used.compare_exchange_strong(expected, 1)) {
      std::memcpy(g_live[i].name, name_, sizeof name_);
      g_live[i].used.store(2, std::memory_order_release);
      slot_ = i;
      break;
    }
  }
  if (slot_ < 0) throw Failure("too many live shm segments");
  const int fd = shm_open(name_, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    unlink();
    fail_errno("shm_open", __FILE__, __LINE__);
  }
  if (ftruncate(fd, off_t(bytes)) != 0) {
    close(fd);
    unlink();
    fail_errno("ftruncate", __FILE__, __LINE__);
  }
  data_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (data_ == MAP_FAILED) {
    data_ = nullptr;
    unlink();
    fail_errno("mmap", __FILE__, __LINE__);
  }
}

ShmSegment::~ShmSegment() {
  unlink();
  if (data_) munmap(data_, bytes_);
}

void ShmSegment::unlink() noexcept {
  if (slot_ < 0) return;
  shm_unlink(name_);
  g_live[slot_].used.store(0, std::memory_order_release);
  slot_ = -1;
}

void* ShmSegment::attach(const char* name, std::size_t bytes) {
  const int fd = FLOOR_SYS(shm_open(name, O_RDWR, 0));
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) fail_errno("mmap", __FILE__, __LINE__);
  return p;
}

}  // namespace cspbench::floors::detail

namespace cspbench::floors {

bool pinning_enabled() noexcept {
  int a = 0, b = 0;
  return detail::pin_cpus(a, b);
}

void unlink_live_segments() noexcept {
  for (auto& s : detail::g_live)
    if (s.used.load(std::memory_order_acquire) == 2) shm_unlink(s.name);
}

}  // namespace cspbench::floors
