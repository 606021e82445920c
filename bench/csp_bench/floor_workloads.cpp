// floor_workloads.cpp: the raw floors as registry entries. Floors compare to
// nothing; csp entries name them in their FloorRef.
//
//   floor:fiber        switch (no size), pingpong per size     Boost.Context, one thread
//   floor:memcpy       stream per size                         one copy per message
//   floor:shm-ring     pingpong, stream per size               spinning SPSC ring, two processes
//   floor:shm-futex    pingpong per size                       same ring, consumer sleeps on a futex
//   floor:shm-eventfd  pingpong per size                       same ring, consumer polls an eventfd
//   floor:shm-futex, floor:shm-eventfd  wakeup (no size)        one-way latency to a parked consumer
//   floor:pipe, floor:unix, floor:tcp   pingpong, stream per size
#include "floors.hpp"
#include "registry.hpp"

namespace cspbench {

namespace fl = floors;

void register_floor_workloads(Registry& reg) {
  reg.add({.workload = "switch",
           .transport = "floor:fiber",
           .metrics = {ns_per_switch()},
           .run = [](std::uint64_t n) { return fl::fiber_switch(n); },
           .n0 = 10000,
           .note = "boost::context::fiber resume round trip main <-> fiber, per switch"});
  for (std::size_t s : reg.sizes())
    reg.add({.workload = "pingpong",
             .transport = "floor:fiber",
             .size = s,
             .metrics = {ns_per_hop()},
             .run = [s](std::uint64_t n) { return fl::fiber_pingpong(s, n); },
             .n0 = 1000,
             .note = "two fibers, one thread: copy into the peer's buffer, switch"});
  for (std::size_t s : reg.sizes())
    reg.add({.workload = "stream",
             .transport = "floor:memcpy",
             .size = s,
             .metrics = stream_metrics(s),
             .run = [s](std::uint64_t n) { return fl::memcpy_copy(s, n); },
             .n0 = 1000,
             .note = "memcpy between two page-aligned buffers, one copy per message"});

  for (std::size_t s : reg.sizes()) {
    reg.add({.workload = "pingpong",
             .transport = "floor:shm-ring",
             .size = s,
             .metrics = {ns_per_hop()},
             .run = [s](std::uint64_t n) { return fl::shm_ring_pingpong(fl::Wake::spin, s, n); },
             .n0 = 100,
             .note = "two spinning SPSC rings in POSIX shm, parent <-> forked child"});
    reg.add({.workload = "stream",
             .transport = "floor:shm-ring",
             .size = s,
             .metrics = stream_metrics(s),
             .run = [s](std::uint64_t n) { return fl::shm_ring_stream(s, n); },
             .n0 = 100,
             .note = "spinning SPSC ring in POSIX shm, copy in + copy out per message"});
  }
  for (fl::Wake w : {fl::Wake::futex, fl::Wake::eventfd})
    for (std::size_t s : reg.sizes())
      reg.add({.workload = "pingpong",
               .transport = std::string("floor:shm-") + fl::to_string(w),
               .size = s,
               .metrics = {ns_per_hop()},
               .run = [w, s](std::uint64_t n) { return fl::shm_ring_pingpong(w, s, n); },
               .n0 = 10,
               .note = std::string("shm rings, consumer sleeps (") + fl::to_string(w) +
                       "), producer always wakes"});

  for (fl::Wake w : {fl::Wake::futex, fl::Wake::eventfd})
    reg.add({.workload = "wakeup",
             .transport = std::string("floor:shm-") + fl::to_string(w),
             .metrics = {ns_per_wake()},
             .run = [w](std::uint64_t n) { return fl::shm_ring_wakeup(w, n); },
             .n0 = 10,
             .note = std::string("16 B stamp after a 150 us pause, through a shm ring to a forked child "
                                 "asleep on ") +
                     (w == fl::Wake::futex ? "a futex" : "poll() of an eventfd") +
                     "; mean latency from send to the child's receipt"});

  for (fl::Link l : {fl::Link::pipe, fl::Link::unix_stream, fl::Link::tcp}) {
    const std::string t = std::string("floor:") + fl::to_string(l);
    for (std::size_t s : reg.sizes()) {
      reg.add({.workload = "pingpong",
               .transport = t,
               .size = s,
               .metrics = {ns_per_hop()},
               .run = [l, s](std::uint64_t n) { return fl::link_pingpong(l, s, n); },
               .n0 = 10,
               .note = "blocking read/write, one write() per message, parent <-> forked child"});
      reg.add({.workload = "stream",
               .transport = t,
               .size = s,
               .metrics = stream_metrics(s),
               .run = [l, s](std::uint64_t n) { return fl::link_stream(l, s, n); },
               .n0 = 10,
               .note = "one write() per message, child verifies and acks the total"});
    }
  }
}

}  // namespace cspbench
