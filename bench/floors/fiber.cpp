// fiber.cpp: Boost.Context floors, one OS thread, no scheduler.
// fiber_switch: the bare cost of boost::context::fiber::resume().
// fiber_pingpong: a hand-off between two coroutines: copy the value into the
// peer's buffer, switch to it; nothing else (no queue, no lock, no wake-up).
#include <boost/context/fiber.hpp>

#include "detail.hpp"

namespace cspbench::floors {

namespace ctx = boost::context;
using detail::now_s;

double fiber_switch(std::uint64_t n) {
  std::uint64_t counter = 0;
  bool stop = false;
  ctx::fiber f{[&](ctx::fiber&& main) {
    while (!stop) {
      ++counter;
      main = std::move(main).resume();
    }
    return std::move(main);
  }};
  const double t0 = now_s();
  for (std::uint64_t i = 0; i < n; ++i) f = std::move(f).resume();
  const double t1 = now_s();
  stop = true;
  f = std::move(f).resume();  // lets the fiber return
  FLOOR_CHECK(!f);
  FLOOR_CHECK(counter == n);
  return t1 - t0;
}

double fiber_pingpong(std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  detail::PageBuf ping(size), pong(size), echo_buf(size), main_buf(size, 0xAB);
  bool ok = true;
  // The echo fiber receives in `ping`, checks, answers seq+1 through `pong`.
  ctx::fiber echo{[&](ctx::fiber&& main) {
    for (std::uint64_t i = 0; i < n; ++i) {
      std::memcpy(echo_buf.data(), ping.data(), size);  // take the value
      ok = ok && detail::stamp_is(echo_buf.data(), size, i);
      detail::stamp(echo_buf.data(), size, i + 1);
      std::memcpy(pong.data(), echo_buf.data(), size);  // hand it back
      main = std::move(main).resume();
    }
    return std::move(main);
  }};
  const double t0 = now_s();
  for (std::uint64_t i = 0; i < n; ++i) {
    detail::stamp(main_buf.data(), size, i);
    std::memcpy(ping.data(), main_buf.data(), size);
    echo = std::move(echo).resume();
    std::memcpy(main_buf.data(), pong.data(), size);
    if (!detail::stamp_is(main_buf.data(), size, i + 1)) ok = false;
  }
  const double t1 = now_s();
  echo = std::move(echo).resume();  // the echo loop has ended: let it return
  FLOOR_CHECK(!echo);
  FLOOR_CHECK(ok);
  return t1 - t0;
}

}  // namespace cspbench::floors
