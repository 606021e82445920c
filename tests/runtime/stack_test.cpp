// Tests of coroutine stacks (runtime/src/stack.hpp, csp/runtime.hpp):
// processes get separate stacks that stay intact while parked, past the
// guarded-stack budget too; a stack overflow is a clear crash, by the guard
// page on the first stacks and by the canary (with a message naming the
// process) on slab stacks.
//
// How the slab-stack death test reaches a slab stack: stack.cpp hands out
// guarded stacks first (up to a budget derived from vm.max_map_count), then
// slab stacks. The test has no knob to force a kind, so inside the death
// test's child (a fresh process) a process keeps spawning probe processes,
// each of which holds on to its stack by parking, until one finds itself
// on a slab stack; that probe overflows. A probe tells the kinds apart by
// stack.hpp's layout: below a guarded stack is a PROT_NONE page, a slab
// stack starts 64 bytes below a page boundary with the canary word
// (kStackCanary); see stack_kind().
//
// Run by ctest with CSP_WORKERS=1 and 4.
#include <gtest/gtest.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <csp/csp.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../../runtime/src/stack.hpp"  // kStackCanary: the canary word of slab stacks

using namespace std::chrono_literals;

namespace {

/// Reads 8 bytes at `p` without faulting: false if `p` is not readable
/// (a PROT_NONE guard page).
bool read_word(std::uintptr_t p, std::uint64_t& word) {
  iovec local{&word, sizeof word};
  iovec remote{reinterpret_cast<void*>(p), sizeof word};
  return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(sizeof word);
}

/// What kind of stack holds `here` (an address on the calling coroutine's
/// stack of `size` bytes). Slab stacks begin 64 bytes below a page boundary
/// with the canary word (stack.hpp), so going down from `here` one page at
/// a time, the word at each "page boundary - 64" is either that canary (a
/// slab stack: found its lowest word), or unreadable (the guard page below
/// a guarded stack).
struct StackKind {
  bool guarded = false;
  const char* slab_bottom = nullptr;  // set for a slab stack
};
StackKind stack_kind(const void* here, std::size_t size) {
  const auto page = std::uintptr_t{4096};
  const auto top_page = reinterpret_cast<std::uintptr_t>(here) & ~(page - 1);
  for (std::uintptr_t k = 0; k <= size / page + 1; ++k) {
    const std::uintptr_t candidate = top_page - k * page - 64;
    std::uint64_t word = 0;
    if (!read_word(candidate, word)) return StackKind{true, nullptr};
    if (word == csp::detail::kStackCanary) return StackKind{false, reinterpret_cast<const char*>(candidate)};
  }
  return StackKind{};
}

const void* frame() { return __builtin_frame_address(0); }

/// Writes `n` bytes just below the caller's frame. A plain loop, not
/// memset, and warmed up once on a shallow stack (see overflow_a_slab_stack):
/// the first call of a library function (a sanitizer's alloca hook too) goes
/// through the lazy binder, which needs kilobytes of stack of its own.
__attribute__((noinline)) void scribble(std::size_t n) {
  volatile char* p = static_cast<char*>(__builtin_alloca(n));
  for (std::size_t i = 0; i < n; ++i) p[i] = 0x5A;
}

/// Recurses until the frame is below `floor`, then writes 2 KiB below it:
/// across the stack's lowest word and about 1.5 KiB past it (a slab
/// stack has at least 4032 mapped bytes below it: stack.hpp).
__attribute__((noinline)) int descend_to(const char* floor) {
  volatile char pad[128];
  pad[0] = 1;
  if (static_cast<const char*>(__builtin_frame_address(0)) < floor) {
    scribble(2048);
    return pad[0];
  }
  return descend_to(floor) + pad[0];
}

/// Recurses `depth` frames of about 1 KiB each, touching all of them.
__attribute__((noinline)) int recurse(int depth) {
  volatile char pad[1024];
  std::memset(const_cast<char*>(pad), depth & 0xFF, sizeof pad);
  if (depth == 0) return pad[0];
  return recurse(depth - 1) + pad[1023];
}

// ---------------------------------------------------------------------------

TEST(Stack, ProcessesUseTheirStackFreely) {
  // Well inside the default 128 KiB: about 64 KiB of frames.
  auto [r] = csp::Parallel([] { return recurse(64); });
  EXPECT_EQ(r, 64 * 65 / 2);
}

TEST(Stack, ParkedProcessesKeepSeparateIntactStacks) {
  // More processes alive at once than there are guarded stacks (a quarter
  // of vm.max_map_count mappings, two per stack), so slab stacks are used
  // too. Each fills part of its stack with its own pattern, parks, and
  // checks the pattern once woken.
  std::size_t max_maps = 65530;
  std::ifstream("/proc/sys/vm/max_map_count") >> max_maps;
#if defined(__SANITIZE_THREAD__)
  const int n = 4000;  // TSan allows at most 8128 live fibers: guarded stacks only
#else
  const int n = static_cast<int>(std::min<std::size_t>(max_maps / 8 + 2000, 40000));
#endif
  csp::Channel<int> wake{"wake"};
  std::vector<csp::Process<bool>> procs;
  procs.reserve(n);
  for (int i = 0; i < n; ++i)
    procs.push_back(csp::process(
        [i](csp::Reader<int> in) {
          char mine[2048];
          std::memset(mine, i & 0xFF, sizeof mine);
          asm volatile("" : : "r"(mine) : "memory");
          in.read();  // parked while the others fill their stacks
          for (char c : mine)
            if (c != static_cast<char>(i & 0xFF)) return false;
          return true;
        },
        wake.reader()));
  auto [intact, unused] = csp::Parallel(std::move(procs), csp::process(
                                                              [n](csp::Writer<int> out) {
                                                                for (int i = 0; i < n; ++i) out.write(i);
                                                              },
                                                              wake.writer()));
  (void)unused;
  int bad = 0;
  for (bool ok : intact) bad += !ok;
  EXPECT_EQ(bad, 0) << bad << " of " << n << " processes found their stack overwritten";
}

// ---------------------------------------------------------------------------
// Stack overflow is a clear crash

/// In a fresh child: the first process gets a guarded stack; it recurses
/// past its end into the guard page.
void overflow_a_guarded_stack() {
  csp::Parallel(csp::process([] {
                  const std::size_t size = csp::configuration().stack_size;
                  if (!stack_kind(frame(), size).guarded) {
                    std::fprintf(stderr, "test setup: the first stack is not guarded\n");
                    std::exit(0);  // "failed to die": the test reports it
                  }
                  recurse(static_cast<int>(2 * size / 1024));  // twice the stack
                  std::fprintf(stderr, "test setup: recursed past the stack without a fault\n");
                }).named("deep-recursion"));
  std::exit(0);
}

/// In a fresh child: probes park on guarded stacks until one lands on a
/// slab stack and overflows it; the scheduler must abort with a message at
/// the probe's next switch.
void overflow_a_slab_stack() {
  csp::Config config;
  config.stack_size = 32 * 1024;  // small stacks: the probes are cheap
  csp::configure(config);
  csp::Parallel([] {
    const std::size_t size = csp::configuration().stack_size;
    csp::Channel<int> gate{"gate"}, report{"report"};
    auto gate_open = gate.writer();  // never written: probes on guarded stacks park here
    auto reports = report.reader();
    for (int i = 0; i < 200000; ++i) {
      csp::Spawn(csp::process(
                     [size](csp::Reader<int> g, csp::Writer<int> rep) {
                       const StackKind kind = stack_kind(frame(), size);
                       if (kind.guarded) {
                         rep.write(0);
                         g.read();  // hold this stack
                         return;
                       }
                       const char* bottom = kind.slab_bottom;
                       if (!bottom) {
                         std::fprintf(stderr, "test setup: neither a guarded nor a canary stack\n");
                         std::exit(0);
                       }
                       descend_to(reinterpret_cast<const char*>(UINTPTR_MAX));  // warm-up: binds what it calls
                       descend_to(bottom + 512);
                       csp::sleep_for(1ms);  // parks: the canary is checked as it switches out
                       rep.write(1);         // not reached when the overflow is caught
                     },
                     gate.reader(), report.writer())
                     .named("probe-" + std::to_string(i)));
      if (reports.read() == 1) break;
    }
    std::fprintf(stderr, "test setup: no probe overflowed\n");
    std::exit(0);
  });
}

TEST(StackDeathTest, OverflowOfAGuardedStackFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer catches the fault and reports it before dying.
  EXPECT_DEATH(overflow_a_guarded_stack(), "");
#else
  EXPECT_EXIT(overflow_a_guarded_stack(), ::testing::KilledBySignal(SIGSEGV), "");
#endif
}

TEST(StackDeathTest, OverflowOfACanaryStackAbortsNamingTheProcess) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "TSan allows at most 8128 live fibers, fewer than the guarded stacks handed out before "
                  "the first slab stack (vm.max_map_count / 8); covered by the plain and ASan builds";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(overflow_a_slab_stack(), "stack overflow in process 'probe-[0-9]+'");
}

}  // namespace
