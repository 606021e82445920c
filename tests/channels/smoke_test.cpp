// Quick end-to-end check of channels and alternation (the full suites are
// in the per-concept files).
#include <gtest/gtest.h>

#include <csp/csp.hpp>

using namespace std::chrono_literals;

TEST(Smoke, ProducerConsumer) {
  csp::Channel<int> ch{"numbers"};
  auto producer = [](csp::Writer<int> out) {
    for (int i = 0; i < 1000; ++i) out.write(i);
  };
  auto consumer = [](csp::Reader<int> in) {
    long sum = 0;
    for (int v : in) sum += v;
    return sum;
  };
  auto [a, sum] = csp::Parallel(csp::process(producer, ch.writer()), csp::process(consumer, ch.reader()));
  (void)a;
  EXPECT_EQ(sum, 999L * 1000 / 2);
}

TEST(Smoke, SelectOutputAgainstInput) {
  for (int round = 0; round < 200; ++round) {
    csp::Channel<int> a, b;
    auto x = [](csp::Writer<int> out_a, csp::Reader<int> in_b) {
      auto s = csp::PriSelect(csp::output(out_a, 1), csp::input(in_b));
      return s.index == 0 ? 1 : 10 + s.value<int>();
    };
    auto y = [](csp::Reader<int> in_a, csp::Writer<int> out_b) {
      auto s = csp::PriSelect(csp::input(in_a), csp::output(out_b, 2));
      return s.index == 0 ? 100 + s.value<int>() : 2;
    };
    auto [rx, ry] = csp::Parallel(csp::process(x, a.writer(), b.reader()), csp::process(y, a.reader(), b.writer()));
    bool x_wrote_a = rx == 1 && ry == 101;
    bool y_wrote_b = rx == 12 && ry == 2;
    EXPECT_TRUE(x_wrote_a || y_wrote_b) << rx << " " << ry;
  }
}

TEST(Smoke, DeadlockIsReported) {
  csp::Channel<int> c{"never"};
  try {
    csp::Parallel(csp::process([](csp::Reader<int> r) { r.read(); }, c.reader()).named("lonely reader"));
    FAIL() << "no deadlock reported";
  } catch (const csp::Deadlock& e) {
    EXPECT_NE(std::string(e.what()).find("lonely reader"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("never"), std::string::npos) << e.what();
  }
}
