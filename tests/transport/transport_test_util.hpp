// Helpers shared by the transport tests: a fixture that forces one
// cross-process transport for each test, and checks for leftovers.
#pragma once

#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csp/csp.hpp>
#include <cstdio>
#include <memory>
#include <set>
#include <string>

// Forked children under TSan start threads; that is supported, only not
// TSan's default (die_after_fork=1).
#if defined(CSP_TSAN)
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

/// Skips a test whose os_process children start threads (a select's
/// back-off sleep, connect retries, Parallel inside a child) in a TSan build:
/// TSan cannot follow threads started after a multi-threaded fork (the child
/// reuses the parent threads' stacks and TSan reports "dup thread"). The
/// parent side of these tests is checked by TSan in the others, the
/// children by the ASan build.
#if defined(CSP_TSAN)
#define CSP_SKIP_IF_CHILD_STARTS_THREADS() \
  GTEST_SKIP() << "TSan cannot follow threads started in a child of a multi-threaded fork"
#else
#define CSP_SKIP_IF_CHILD_STARTS_THREADS() (void)0
#endif

namespace csp_test {

using csp::transport_detail::LinkKind;

inline auto all_link_kinds() {
  return ::testing::Values(LinkKind::shm, LinkKind::pipe, LinkKind::unix_socket, LinkKind::tcp);
}

inline std::string link_kind_name(const ::testing::TestParamInfo<LinkKind>& info) {
  return csp::transport_detail::to_string(info.param);
}

/// Names in `dir` (for leftover checks).
inline std::set<std::string> list_dir(const char* dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir)) {
    while (dirent* e = ::readdir(d)) out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

/// Runs each test with its transport as the default for os_process links.
class TransportTest : public ::testing::TestWithParam<LinkKind> {
 protected:
  void SetUp() override {
    csp::transport_detail::set_default_link_kind(GetParam());
    shm_before_ = list_dir("/dev/shm");
  }
  void TearDown() override {
    csp::transport_detail::set_default_link_kind(std::nullopt);
    auto after = list_dir("/dev/shm");
    for (const auto& name : after)
      EXPECT_TRUE(shm_before_.count(name) || from_benchmark_floor(name)) << "left in /dev/shm: " << name;
  }
  /// csp-bench's raw floors (bench/floors) name their POSIX segments
  /// "csp-bench-<pid>-..."; ctest -j2 may run csp-bench (label bench) beside
  /// this test, and its check script looks after those. csp itself creates
  /// nothing in /dev/shm (its segments are memfds), so every other new name
  /// is a leak of ours.
  static bool from_benchmark_floor(const std::string& name) { return name.rfind("csp-bench-", 0) == 0; }
  std::set<std::string> shm_before_;
};

/// A TransportTest that forks a child holding the other end of one link.
class ForkTest : public TransportTest {
 protected:
  /// Forks a child that runs `child(stream)` on its end and exits 0 (1 on
  /// an exception); returns this side's end.
  template <class F>
  std::unique_ptr<csp::transport_detail::ByteStream> fork_with(F child) {
    auto link = csp::transport_detail::make_fork_link(GetParam());
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      int code = 0;
      try {
        auto s = link->child_end();
        child(*s);
      } catch (...) {
        code = 1;
      }
      ::_exit(code);
    }
    return link->parent_end();
  }
  /// The child's exit status, or 100 + the signal that killed it.
  int join() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
  }
  pid_t pid_ = -1;
};

}  // namespace csp_test
