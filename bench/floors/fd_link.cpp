// fd_link.cpp: pipe, AF_UNIX stream socketpair and TCP loopback between this
// process and a forked child; blocking I/O, one write() per message.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "detail.hpp"

namespace cspbench::floors {

const char* to_string(Link l) noexcept {
  switch (l) {
    case Link::pipe: return "pipe";
    case Link::unix_stream: return "unix";
    case Link::tcp: return "tcp";
  }
  return "?";
}

namespace {

using detail::Child;
using detail::Fd;
using detail::now_s;

constexpr std::uint64_t kReady = 0x637370'72656479ull;  // "csp" "redy"

// One side of a link: a socket (rd == wr) or two pipe ends.
struct Side {
  Fd a, b;  // b is unused for sockets
  int rd() const { return a.get(); }
  int wr() const { return b.get() >= 0 ? b.get() : a.get(); }
};

void set_nodelay(int s) {
  int one = 1;
  FLOOR_SYS(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
}

// Creates the link, forks a child that runs child_fn(side) and returns
// parent_fn(side), the timed part, in the parent. The child is joined (and
// its failure reported) before returning.
template <class ParentFn, class ChildFn>
double over_link(Link link, ParentFn&& parent_fn, ChildFn&& child_fn) {
  Side parent, child_side;
  Fd listener;
  sockaddr_in addr{};
  switch (link) {
    case Link::pipe: {
      int to_child[2], to_parent[2];
      FLOOR_SYS(pipe(to_child));
      parent.b.reset(to_child[1]);
      child_side.a.reset(to_child[0]);
      FLOOR_SYS(pipe(to_parent));
      parent.a.reset(to_parent[0]);
      child_side.b.reset(to_parent[1]);
      break;
    }
    case Link::unix_stream: {
      int sv[2];
      FLOOR_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
      parent.a.reset(sv[0]);
      child_side.a.reset(sv[1]);
      break;
    }
    case Link::tcp: {
      listener.reset(FLOOR_SYS(socket(AF_INET, SOCK_STREAM, 0)));
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = 0;  // any free port
      socklen_t alen = sizeof addr;
      FLOOR_SYS(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr));
      FLOOR_SYS(listen(listener.get(), 1));
      FLOOR_SYS(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &alen));
      break;
    }
  }
  int parent_cpu = -1, child_cpu = -1;
  detail::pin_cpus(parent_cpu, child_cpu);
  detail::PinScope pin(parent_cpu);

  Child child(
      [&] {
        parent.a.reset();  // the parent's ends: closed so EOF means "peer gone"
        parent.b.reset();
        if (link == Link::tcp) {
          listener.reset();
          child_side.a.reset(FLOOR_SYS(socket(AF_INET, SOCK_STREAM, 0)));
          FLOOR_SYS(connect(child_side.a.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr));
          set_nodelay(child_side.a.get());
        }
        detail::send_u64(child_side.wr(), kReady);
        child_fn(child_side);
      },
      child_cpu);
  child_side.a.reset();  // the child's ends: closed here so the child's exit gives EOF
  child_side.b.reset();
  if (link == Link::tcp) {
    detail::wait_readable(listener.get(), child);
    parent.a.reset(FLOOR_SYS(accept(listener.get(), nullptr, nullptr)));
    listener.reset();
    set_nodelay(parent.a.get());
  }
  FLOOR_CHECK(detail::recv_u64(parent.rd()) == kReady);
  const double secs = parent_fn(parent);
  parent.a.reset();
  parent.b.reset();
  child.join();
  return secs;
}

}  // namespace

double link_pingpong(Link link, std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  return over_link(
      link,
      [&](const Side& s) {
        detail::PageBuf msg(size, 0xAB);
        double t0 = now_s();
        for (std::uint64_t i = 0; i <= n; ++i) {  // round trip 0 is a warm-up
          if (i == 1) t0 = now_s();
          detail::stamp(msg.data(), size, i);
          detail::write_all(s.wr(), msg.data(), size);
          detail::read_all(s.rd(), msg.data(), size);
          FLOOR_CHECK(detail::stamp_is(msg.data(), size, i + 1));
        }
        return n ? now_s() - t0 : 0.0;
      },
      [&](const Side& s) {
        detail::PageBuf msg(size);
        for (std::uint64_t i = 0; i <= n; ++i) {
          detail::read_all(s.rd(), msg.data(), size);
          FLOOR_CHECK(detail::stamp_is(msg.data(), size, i));
          detail::stamp(msg.data(), size, i + 1);
          detail::write_all(s.wr(), msg.data(), size);
        }
      });
}

double link_stream(Link link, std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  return over_link(
      link,
      [&](const Side& s) {
        detail::PageBuf msg(size, 0xAB);
        const double t0 = now_s();
        for (std::uint64_t i = 0; i < n; ++i) {
          detail::stamp(msg.data(), size, i);
          detail::write_all(s.wr(), msg.data(), size);
        }
        FLOOR_CHECK(detail::recv_u64(s.rd()) == n);
        return now_s() - t0;
      },
      [&](const Side& s) {
        std::uint64_t got = 0;
        if (size >= 4096) {  // exact reads straight into the message buffer
          detail::PageBuf msg(size);
          for (; got < n; ++got) {
            detail::read_all(s.rd(), msg.data(), size);
            FLOOR_CHECK(detail::stamp_is(msg.data(), size, got));
          }
        } else {  // a buffered reader: whole messages are checked in place
          const std::size_t cap = 65536 + size;
          detail::PageBuf buf(cap);
          std::size_t have = 0;
          while (got < n) {
            const ssize_t r = read(s.rd(), buf.data() + have, cap - have);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) detail::fail_errno("read", __FILE__, __LINE__);
            if (r == 0) throw Failure("peer closed the stream early");
            have += std::size_t(r);
            std::size_t off = 0;
            for (; have - off >= size; off += size)
              FLOOR_CHECK(detail::stamp_is(buf.data() + off, size, got++));
            std::memmove(buf.data(), buf.data() + off, have - off);
            have -= off;
          }
          FLOOR_CHECK(have == 0);
        }
        detail::send_u64(s.wr(), got);
      });
}

}  // namespace cspbench::floors
