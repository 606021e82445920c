// csp/transport/address.hpp: channels at addresses, for unrelated programs
// (the seeds' socket server and client, named FIFO):
//
//   auto jobs = csp::Channel<Job>::host("tcp://127.0.0.1:7000/jobs");     // server program
//   auto jobs = csp::Channel<Job>::connect("tcp://127.0.0.1:7000/jobs");  // client programs
//
// Both sides get an ordinary Channel<T>: any number of programs connect,
// each makes readers and writers as it likes, and every channel semantic
// holds (the host's channel is the home; see csp/transport/wire.hpp).
//
// Addresses:
//   tcp://HOST:PORT/NAME   TCP; several channels may share a port (NAME picks
//                          one). Port 0 binds a free port: hosted_address()
//                          says which.
//   unix:///PATH/NAME      a unix socket at /PATH (the last component is the
//                          channel name), e.g. unix:///run/app.sock/jobs
//   pipe:///PATH           named FIFOs: the host makes a FIFO at /PATH, a
//                          client asks for a connection by writing a request
//                          naming its own pair of FIFOs (PATH.<pid>.<n>.c2s and
//                          .s2c, removed as soon as both sides opened them)
//   shm://NAME             the shm transport (when it is built in)
//   ?buffer=N              (host only) the hosted channel buffers N values
//
// - host(address) starts serving at once (bind/listen happen in the call,
//   so a failure throws TransportError there) and keeps serving until
//   csp::unhost(address) or the end of the program; the socket file or FIFO
//   is removed then (also at exit).
// - While hosted, the hosting itself is a member of both sides: clients that
//   come and go do not retire the channel (a server's `for (job : jobs)`
//   waits for the next client instead of ending when the last one leaves).
//   unhost() gives up these memberships; the channel then retires as usual
//   once the ends still held are gone.
// - connect(address, timeout) retries until `timeout` while nobody serves
//   the address yet, then throws TransportError("csp: cannot connect to
//   ..."). The handshake checks protocol version and element type: a
//   mismatch throws TransportError naming both types and the address.
// - A connection that breaks the protocol (garbage, a truncated frame) is
//   dropped and reported to the transport error handler (stderr by
//   default); the host serves every other client on.
// - Values up to CSP_MAX_FRAME_BYTES (default 64 MiB) per message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <csp/channel.hpp>
#include <csp/detail/frame.hpp>
#include <csp/error.hpp>
#include <csp/transport/remote_channel.hpp>
#include <csp/transport/server.hpp>
#include <csp/transport/wire.hpp>

namespace csp {

/// Called with every TransportError that drops a hosted connection (from a
/// server coroutine; keep it short). Null restores the default, which
/// prints the message to stderr.
using TransportErrorHandler = std::function<void(const TransportError&)>;
void set_transport_error_handler(TransportErrorHandler handler);

/// Stops serving `address` (as given to host, or as hosted_address returns
/// it): no new connections; connections already made keep working. Removes
/// the socket file or FIFO. Returns false if nothing was hosted there.
bool unhost(std::string_view address);

namespace transport_detail {

struct Address {
  enum class Scheme : std::uint8_t { tcp, unix_socket, pipe, shm };
  Scheme scheme = Scheme::tcp;
  std::string host;          // tcp: host name or address
  std::uint16_t port = 0;    // tcp
  std::string path;          // unix: socket path; pipe: FIFO path; shm: segment name
  std::string name;          // the channel's name at the endpoint
  std::size_t buffer = 0;    // ?buffer=N
  std::string text;          // as given

  /// The listening endpoint: "tcp://127.0.0.1:7000", "unix:///run/a.sock", ...
  [[nodiscard]] std::string endpoint() const;
};

/// Parses an address; throws TransportError saying what is wrong with it.
Address parse_address(std::string_view text);

/// A channel served at an address (typed part).
class HostedChannelBase {
 public:
  virtual ~HostedChannelBase() = default;
  /// Serves one connection whose HELLO (flags, seq) the acceptor has read.
  virtual void serve(std::unique_ptr<ByteStream> stream, const csp::detail::Hello& hello, std::uint8_t flags,
                     std::uint32_t seq, FrameReader reader, const std::string& peer) = 0;
  /// Gives up the hosting's own membership of both sides (unhost).
  virtual void release() noexcept = 0;
  std::string address;             // as bound
  const void* channel = nullptr;   // its ChannelCore, for hosted_address()
};

/// Serves `hosted` at `address`; returns the address as bound.
std::string host_channel(const Address& address, std::shared_ptr<HostedChannelBase> hosted);
/// A stream to `address`, retrying until `deadline` while nobody serves it.
std::unique_ptr<ByteStream> dial(const Address& address, Deadline deadline, std::chrono::milliseconds timeout);
/// The bound address of a hosted channel ("" if it is not hosted).
std::string hosted_address_of(const void* channel);

template <class T>
class HostedChannel final : public HostedChannelBase {
 public:
  explicit HostedChannel(std::shared_ptr<csp::detail::ChannelImpl<T>> home)
      : home_(std::move(home)),
        reader_(std::make_shared<csp::detail::EndState<T>>(home_, csp::detail::Side::reader)),
        writer_(std::make_shared<csp::detail::EndState<T>>(home_, csp::detail::Side::writer)) {
    channel = home_.get();
  }
  void serve(std::unique_ptr<ByteStream> stream, const csp::detail::Hello& hello, std::uint8_t flags, std::uint32_t seq,
             FrameReader reader, const std::string& peer) override {
    ChannelServer<T> server(home_, std::move(stream),
                            {peer, address, reader.max_payload(), /*hosted=*/true});
    server.set_hello_frame(flags, seq);
    server.serve(hello, std::move(reader));
  }
  void release() noexcept override {
    try {
      reader_->retire();
      writer_->retire();
    } catch (...) {  // a home that is itself remote and gone: nothing to leave
    }
  }

 private:
  std::shared_ptr<csp::detail::ChannelImpl<T>> home_;  // the channel served
  // The hosting's own membership of each side (see the file comment).
  std::shared_ptr<csp::detail::EndState<T>> reader_;
  std::shared_ptr<csp::detail::EndState<T>> writer_;
};

}  // namespace transport_detail

/// The address a hosted channel is served at, with a tcp port 0 resolved
/// ("" if `channel` is not hosted).
template <class T>
std::string hosted_address(const Channel<T>& channel) {
  return transport_detail::hosted_address_of(channel.impl().get());
}

template <class T>
Channel<T> Channel<T>::host(std::string_view address) {
  static_assert(Codable<T>, "a hosted channel needs a codable element type (csp/codec.hpp)");
  const transport_detail::Address a = transport_detail::parse_address(address);
  std::string name = a.name.empty() ? a.endpoint() : a.name;
  Channel<T> channel = a.buffer ? Channel<T>(std::move(name), buffer(a.buffer)) : Channel<T>(std::move(name));
  auto hosted = std::make_shared<transport_detail::HostedChannel<T>>(channel.impl());
  transport_detail::host_channel(a, std::move(hosted));
  return channel;
}

template <class T>
Channel<T> Channel<T>::connect(std::string_view address, std::chrono::milliseconds timeout) {
  static_assert(Codable<T>, "a connected channel needs a codable element type (csp/codec.hpp)");
  using namespace transport_detail;
  const Address a = parse_address(address);
  const auto deadline = csp::detail::deadline_after(timeout);
  auto core = std::make_shared<ClientCore>(dial(a, deadline, timeout), a.text, max_frame_payload(false));
  const csp::detail::Hello hello = csp::detail::make_hello<T>(a.name);
  const std::uint32_t seq = core->send([&](OutFrame& f, std::uint32_t s) {
    const std::size_t start = csp::detail::begin_frame(f.head, FrameKind::hello, 0, s, 0);
    csp::detail::encode_hello(f.head, hello);
    csp::detail::end_frame(f.head, start, 0xFFFFFFFFu);
  });
  const bool answered = core->await(
      seq,
      [&](const FrameHeader& h, Payload& payload) {
        if (h.kind == FrameKind::hello_nak) throw TransportError(csp::detail::decode_hello_nak(payload.all()));
        if (h.kind != FrameKind::hello_ack)
          throw TransportError("csp: " + a.text + " answered the handshake with " +
                               std::string(csp::detail::frame_kind_name(h.kind)));
      },
      deadline);
  if (!answered)
    throw TransportError("csp: cannot connect to " + a.text + ": no handshake reply within " +
                         std::to_string(timeout.count()) + " ms");
  return Channel<T>(std::shared_ptr<csp::detail::ChannelImpl<T>>(
      std::make_shared<RemoteChannel<T>>(a.name.empty() ? a.text : a.name, std::move(core))));
}

}  // namespace csp
