// Tests of csp/os_process.hpp: results, failures, poison and retire across
// an OS process boundary (the channel semantics per transport are in
// conformance_test.cpp).
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <csp/csp.hpp>
#include <numeric>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

TEST(OsProcess, ReturnsItsResult) {
  auto [a, b] = csp::Parallel(csp::os_process([](int x) { return x * 2; }, 21),
                              csp::os_process([] { return std::string("from ") + std::to_string(::getpid()); }));
  EXPECT_EQ(a, 42);
  EXPECT_NE(b, "from " + std::to_string(::getpid()));
}

TEST(OsProcess, WritesToParent) {
  csp::Channel<int> ch{"numbers"};
  auto producer = [](csp::Writer<int> out) {
    for (int i = 0; i < 1000; ++i) out.write(i);
  };
  auto consumer = [](csp::Reader<int> in) {
    long sum = 0;
    for (int v : in) sum += v;
    return sum;
  };
  auto [a, sum] = csp::Parallel(csp::os_process(producer, ch.writer()), csp::process(consumer, ch.reader()));
  (void)a;
  EXPECT_EQ(sum, 999L * 1000 / 2);
}

TEST(OsProcess, ReadsFromParent) {
  csp::Channel<std::string> ch;
  auto consumer = [](csp::Reader<std::string> in) {
    std::string all;
    for (std::string v : in) all += v;
    return all;
  };
  auto producer = [](csp::Writer<std::string> out) {
    for (int i = 0; i < 5; ++i) out.write(std::to_string(i));
  };
  auto [all, b] = csp::Parallel(csp::os_process(consumer, ch.reader()), csp::process(producer, ch.writer()));
  (void)b;
  EXPECT_EQ(all, "01234");
}

TEST(OsProcess, ExceptionBecomesProcessFailed) {
  try {
    csp::Parallel(csp::os_process([] { throw std::runtime_error("boom"); }).named("thrower"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("thrower"), std::string::npos) << what;
    EXPECT_NE(what.find("boom"), std::string::npos) << what;
    EXPECT_NE(what.find("runtime_error"), std::string::npos) << what;
  }
}

TEST(OsProcess, ExitStatusAndSignalAreReported) {
  try {
    csp::Parallel(csp::os_process([] { ::_exit(3); }).named("quitter"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("status 3"), std::string::npos) << e.what();
  }
  try {
    csp::Parallel(csp::os_process([] { ::raise(SIGKILL); }).named("victim"));
    FAIL() << "no exception";
  } catch (const csp::ProcessFailed& e) {
    EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos) << e.what();
  }
}

}  // namespace
