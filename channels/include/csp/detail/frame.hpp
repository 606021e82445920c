// csp/detail/frame.hpp: the wire frame of the cross-process transports
// (pipe, socket) and the handshake that opens every connection.
//
// A frame is a fixed 16-byte little-endian header followed by `length`
// payload bytes:
//
//   offset  size  field
//        0     2  magic     0xC5F1, catches a peer that is not csp
//        2     1  kind      FrameKind; 0 and unknown values are rejected
//        3     1  flags     meaning per kind, owned by the transports
//        4     4  channel   channel id on this connection
//        8     4  length    payload bytes that follow the header
//       12     4  sequence  pairs a request with its reply (WRITE/WRITE_ACK, ...)
//
// Handshake: the connecting side sends HELLO {protocol version, type
// fingerprint, type name, channel name}; the accepting side runs
// check_hello() and answers HELLO_ACK, or HELLO_NAK carrying the error's
// message, which the connecting side throws as csp::TransportError. So a
// mismatch is reported on both ends, and no value is ever sent before the
// two ends agree on the element type.
//
// A stream that failed to parse cannot be resynchronised (a length could be
// anything), so FrameDecoder's errors are sticky: the transport must drop
// the connection.
#pragma once

#include <csp/codec.hpp>
#include <csp/error.hpp>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace csp::detail {

inline constexpr std::uint16_t frame_magic = 0xC5F1;
inline constexpr std::size_t frame_header_size = 16;
/// Default cap on one frame's payload; also bounds what a hostile peer can
/// make us buffer.
inline constexpr std::uint32_t default_max_frame_payload = 64u << 20;
/// Bumped whenever the frame layout or the meaning of a kind changes.
inline constexpr std::uint32_t protocol_version = 4;  // 2: pipelined writes; 3: read-ahead (LEND); 4: LEND batches

/// What a frame carries. Values are part of the protocol: append, never renumber.
enum class FrameKind : std::uint8_t {
  hello = 1,          // handshake offer: Hello payload
  hello_ack = 2,      // handshake accepted, empty payload
  hello_nak = 3,      // handshake refused: reason string payload
  write = 4,          // a value offered to the channel's home: encoded value payload
  write_ack = 5,      // the home matched that write with a reader
  read_req = 6,       // a remote reader asks the home for a value
  read_data = 7,      // the value for a read_req: encoded value payload
  poison = 8,         // poison the channel
  retire = 9,         // one end retires from the channel
  close = 10,         // orderly end of the connection
  select_offer = 11,  // a remote alternation offers to communicate
  select_claim = 12,  // the home asks the selecting process to commit an offer
  select_cancel = 13, // an offer is withdrawn or a claim declined
  ping = 14,          // liveness probe
  lend = 15,          // a value lent ahead to a remote reader (home to remote, unasked)
  lend_end = 16,      // the home stopped lending to the remote reader
  consumed = 17,      // the remote took lent values (a hint, no reply)
};

inline constexpr std::uint8_t last_frame_kind = static_cast<std::uint8_t>(FrameKind::consumed);

[[nodiscard]] constexpr bool is_frame_kind(std::uint8_t kind) noexcept {
  return kind >= 1 && kind <= last_frame_kind;
}

/// Protocol spelling of a kind ("WRITE_ACK"), for messages and logs.
[[nodiscard]] constexpr std::string_view frame_kind_name(FrameKind kind) noexcept {
  switch (kind) {
    case FrameKind::hello: return "HELLO";
    case FrameKind::hello_ack: return "HELLO_ACK";
    case FrameKind::hello_nak: return "HELLO_NAK";
    case FrameKind::write: return "WRITE";
    case FrameKind::write_ack: return "WRITE_ACK";
    case FrameKind::read_req: return "READ_REQ";
    case FrameKind::read_data: return "READ_DATA";
    case FrameKind::poison: return "POISON";
    case FrameKind::retire: return "RETIRE";
    case FrameKind::close: return "CLOSE";
    case FrameKind::select_offer: return "SELECT_OFFER";
    case FrameKind::select_claim: return "SELECT_CLAIM";
    case FrameKind::select_cancel: return "SELECT_CANCEL";
    case FrameKind::ping: return "PING";
    case FrameKind::lend: return "LEND";
    case FrameKind::lend_end: return "LEND_END";
    case FrameKind::consumed: return "CONSUMED";
  }
  return "UNKNOWN";
}

/// The decoded header; the magic is implicit.
struct FrameHeader {
  FrameKind kind = FrameKind::ping;  // what the payload is
  std::uint8_t flags = 0;            // per-kind bits, defined by the transports
  std::uint32_t channel = 0;         // channel id on this connection
  std::uint32_t length = 0;          // payload bytes after the header
  std::uint32_t sequence = 0;        // request/reply pairing

  friend bool operator==(const FrameHeader&, const FrameHeader&) = default;
};

namespace frame_bytes {
inline void store_u16(std::byte* out, std::uint16_t value) noexcept {
  out[0] = static_cast<std::byte>(value & 0xff);
  out[1] = static_cast<std::byte>(value >> 8);
}
inline void store_u32(std::byte* out, std::uint32_t value) noexcept {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
}
inline std::uint16_t load_u16(const std::byte* in) noexcept {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(in[0]) |
                                    (std::to_integer<unsigned>(in[1]) << 8));
}
inline std::uint32_t load_u32(const std::byte* in) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::uint32_t value;
    std::memcpy(&value, in, 4);  // one load (the byte loop below is not always merged)
    return value;
  } else {
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value |= std::to_integer<std::uint32_t>(in[i]) << (8 * i);
    return value;
  }
}
}  // namespace frame_bytes

/// Writes `header` (with the magic) into 16 bytes at `out`.
inline void encode_frame_header(const FrameHeader& header,
                                std::span<std::byte, frame_header_size> out) noexcept {
  frame_bytes::store_u16(out.data(), frame_magic);
  out[2] = static_cast<std::byte>(header.kind);
  out[3] = static_cast<std::byte>(header.flags);
  frame_bytes::store_u32(out.data() + 4, header.channel);
  frame_bytes::store_u32(out.data() + 8, header.length);
  frame_bytes::store_u32(out.data() + 12, header.sequence);
}

[[nodiscard]] inline std::array<std::byte, frame_header_size> encode_frame_header(
    const FrameHeader& header) noexcept {
  std::array<std::byte, frame_header_size> bytes;
  encode_frame_header(header, bytes);
  return bytes;
}

/// Parses and validates 16 header bytes. Throws csp::TransportError on a bad
/// magic, an unknown kind or a length above `max_payload`.
[[nodiscard]] inline FrameHeader decode_frame_header(
    std::span<const std::byte, frame_header_size> in,
    std::uint32_t max_payload = default_max_frame_payload) {
  const std::uint16_t magic = frame_bytes::load_u16(in.data());
  if (magic != frame_magic) {
    char text[64];
    std::snprintf(text, sizeof text, "0x%04x (expected 0x%04x)", magic, frame_magic);
    throw TransportError(std::string("csp: bad frame magic ") + text +
                         ": the peer is not speaking the csp protocol");
  }
  const auto kind = std::to_integer<std::uint8_t>(in[2]);
  if (!is_frame_kind(kind))
    throw TransportError("csp: unknown frame kind " + std::to_string(kind));
  FrameHeader header;
  header.kind = static_cast<FrameKind>(kind);
  header.flags = std::to_integer<std::uint8_t>(in[3]);
  header.channel = frame_bytes::load_u32(in.data() + 4);
  header.length = frame_bytes::load_u32(in.data() + 8);
  header.sequence = frame_bytes::load_u32(in.data() + 12);
  if (header.length > max_payload)
    throw TransportError("csp: " + std::string(frame_kind_name(header.kind)) +
                         " frame payload of " + std::to_string(header.length) +
                         " bytes exceeds the limit of " + std::to_string(max_payload));
  return header;
}

// ---- building frames -----------------------------------------------------------
// Frames are built in place in a reusable ByteWriter: the header is reserved,
// the payload encoded straight after it, then the length patched in. So a
// value is encoded once and the writer's buffer goes to write(2) as is.

/// Starts a frame at the end of `out`; returns its offset for end_frame().
inline std::size_t begin_frame(ByteWriter& out, FrameKind kind, std::uint32_t channel,
                               std::uint32_t sequence, std::uint8_t flags = 0) {
  const std::size_t start = out.size();
  encode_frame_header(FrameHeader{kind, flags, channel, 0, sequence},
                      std::span<std::byte, frame_header_size>(out.extend(frame_header_size), frame_header_size));
  return start;
}

/// Completes the frame begun at `start`: everything written since is its
/// payload. Throws csp::TransportError (before anything is sent) if the
/// payload exceeds `max_payload`, which the peer would reject.
inline void end_frame(ByteWriter& out, std::size_t start,
                      std::uint32_t max_payload = default_max_frame_payload) {
  const std::size_t length = out.size() - start - frame_header_size;
  if (length > max_payload)
    throw TransportError("csp: cannot send a frame payload of " + std::to_string(length) +
                         " bytes: the limit is " + std::to_string(max_payload));
  std::array<std::byte, 4> bytes;
  frame_bytes::store_u32(bytes.data(), static_cast<std::uint32_t>(length));
  out.patch(start + 8, bytes.data(), bytes.size());
}

/// Appends a frame whose payload is `payload`.
inline void append_frame(ByteWriter& out, FrameKind kind, std::uint32_t channel,
                         std::uint32_t sequence, std::span<const std::byte> payload = {},
                         std::uint8_t flags = 0,
                         std::uint32_t max_payload = default_max_frame_payload) {
  const std::size_t start = begin_frame(out, kind, channel, sequence, flags);
  out.put(payload);
  end_frame(out, start, max_payload);
}

/// Appends a frame whose payload is the encoding of `value` (WRITE, READ_DATA).
template <Codable T>
void append_value_frame(ByteWriter& out, FrameKind kind, std::uint32_t channel,
                        std::uint32_t sequence, const T& value, std::uint8_t flags = 0,
                        std::uint32_t max_payload = default_max_frame_payload) {
  const std::size_t start = begin_frame(out, kind, channel, sequence, flags);
  codec<T>::encode(out, value);
  end_frame(out, start, max_payload);
}

// ---- reading frames ------------------------------------------------------------

/// A complete frame. `payload` points into the FrameDecoder's buffer.
struct Frame {
  FrameHeader header;                  // validated header
  std::span<const std::byte> payload;  // header.length bytes
};

/// Reassembles frames from a byte stream delivered in arbitrary chunks.
/// Single-threaded: one decoder per connection, used by its reactor.
///
///   auto space = decoder.prepare(64 * 1024);
///   ssize_t n = ::read(fd, space.data(), space.size());
///   decoder.commit(n);
///   while (auto frame = decoder.next()) handle(*frame);
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_payload = default_max_frame_payload)
      : max_payload_(max_payload) {}

  /// Copies `chunk` in. Invalidates frames returned earlier.
  void feed(std::span<const std::byte> chunk) {
    auto space = prepare(chunk.size());
    if (!chunk.empty()) std::memcpy(space.data(), chunk.data(), chunk.size());
    commit(chunk.size());
  }
  void feed(const void* data, std::size_t size) {
    feed(std::span<const std::byte>(static_cast<const std::byte*>(data), size));
  }

  /// Returns `size` writable bytes to read(2) into, then call commit() with
  /// the count actually read. Invalidates frames returned earlier.
  [[nodiscard]] std::span<std::byte> prepare(std::size_t size) {
    if (begin_ != 0) {
      // Move the unread tail to the front so the buffer stays bounded by one
      // frame plus one read.
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buffer_.size() - end_ < size) buffer_.resize(end_ + size);
    prepared_ = size;
    return {buffer_.data() + end_, size};
  }

  /// Adds `size` bytes written into the span from prepare(). Throws
  /// std::logic_error if more than was prepared.
  void commit(std::size_t size) {
    if (size > prepared_) throw std::logic_error("csp::FrameDecoder::commit beyond prepare");
    end_ += size;
    prepared_ = 0;
  }

  /// The next complete frame, or nullopt until more bytes arrive. The
  /// payload stays valid until the next feed(), prepare() or next(). Throws
  /// csp::TransportError on a malformed header, as soon as its 16 bytes are
  /// in (not after waiting for a bogus payload), and again on every later call.
  [[nodiscard]] std::optional<Frame> next() {
    if (!failure_.empty()) throw TransportError(failure_);
    if (end_ - begin_ < frame_header_size) return std::nullopt;
    FrameHeader header;
    try {
      header = decode_frame_header(
          std::span<const std::byte, frame_header_size>(buffer_.data() + begin_,
                                                        frame_header_size),
          max_payload_);
    } catch (const TransportError& error) {
      failure_ = std::string(error.what()) + " (at stream offset " +
                 std::to_string(consumed_) + ")";
      throw TransportError(failure_);
    }
    if (end_ - begin_ - frame_header_size < header.length) return std::nullopt;
    Frame frame{header, {buffer_.data() + begin_ + frame_header_size, header.length}};
    begin_ += frame_header_size + header.length;
    consumed_ += frame_header_size + header.length;
    return frame;
  }

  /// Bytes received but not yet returned as frames.
  [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
  [[nodiscard]] std::uint32_t max_payload() const noexcept { return max_payload_; }
  /// True once the stream has been rejected.
  [[nodiscard]] bool failed() const noexcept { return !failure_.empty(); }

 private:
  std::vector<std::byte> buffer_;     // [begin_, end_) unread bytes; its size is capacity
  std::size_t begin_ = 0;             // first byte not yet returned in a frame
  std::size_t end_ = 0;               // one past the last received byte
  std::size_t prepared_ = 0;          // bytes handed out by prepare(), bound for commit()
  std::uint64_t consumed_ = 0;        // stream offset of begin_, for messages
  std::uint32_t max_payload_;         // larger frames are rejected
  std::string failure_;               // first error; non-empty makes next() throw
};

// ---- handshake -------------------------------------------------------------------

/// HELLO payload: u32 version, u64 fingerprint, string type name, string
/// channel name (strings as in csp::codec).
struct Hello {
  std::uint32_t version = protocol_version;  // sender's protocol version
  std::uint64_t fingerprint = 0;             // type_fingerprint of the element type
  std::string type_name;                     // type_name of the element type, for messages
  std::string channel_name;                  // which channel the connection is for

  friend bool operator==(const Hello&, const Hello&) = default;
};

/// This side's HELLO for a channel of T.
template <class T>
[[nodiscard]] Hello make_hello(std::string channel_name) {
  return Hello{protocol_version, type_fingerprint<T>(), csp::type_name<T>(),
               std::move(channel_name)};
}

inline void encode_hello(ByteWriter& out, const Hello& hello) {
  out.put_u32(hello.version);
  out.put_u64(hello.fingerprint);
  codec<std::string>::encode(out, hello.type_name);
  codec<std::string>::encode(out, hello.channel_name);
}

/// Parses a HELLO payload. A HELLO of another protocol version is returned
/// with only `version` filled in, since the rest of its layout is unknown;
/// check_hello() then reports the version mismatch. Throws
/// csp::TransportError on a malformed payload.
[[nodiscard]] inline Hello decode_hello(std::span<const std::byte> payload) {
  ByteReader in(payload);
  try {
    Hello hello;
    hello.version = in.get_u32();
    if (hello.version != protocol_version) return hello;
    hello.fingerprint = in.get_u64();
    hello.type_name = codec<std::string>::decode(in);
    hello.channel_name = codec<std::string>::decode(in);
    in.expect_end("the HELLO fields");
    return hello;
  } catch (const TransportError& error) {
    throw TransportError(std::string(error.what()) + " (decoding HELLO)");
  }
}

/// Throws csp::TransportError unless `received` (the peer's HELLO) agrees
/// with `expected` (ours) on protocol version and element type. The message
/// names `address`, the channel and both type names.
inline void check_hello(const Hello& received, const Hello& expected, std::string_view address) {
  const std::string where = "'" + std::string(address) + "' (channel '" +
                            (expected.channel_name.empty() ? received.channel_name
                                                           : expected.channel_name) +
                            "')";
  if (received.version != expected.version)
    throw TransportError("csp: protocol version mismatch on " + where + ": peer speaks " +
                         std::to_string(received.version) + ", this side " +
                         std::to_string(expected.version));
  if (received.fingerprint != expected.fingerprint) {
    char fingerprints[80];
    std::snprintf(fingerprints, sizeof fingerprints, "%016llx",
                  static_cast<unsigned long long>(received.fingerprint));
    const std::string theirs = fingerprints;
    std::snprintf(fingerprints, sizeof fingerprints, "%016llx",
                  static_cast<unsigned long long>(expected.fingerprint));
    throw TransportError("csp: element type mismatch on " + where + ": peer has '" +
                         received.type_name + "' (fingerprint " + theirs +
                         "), this side expects '" + expected.type_name + "' (fingerprint " +
                         fingerprints + ")");
  }
}

/// check_hello() against this side's HELLO for a channel of T.
template <class T>
void check_hello(const Hello& received, std::string_view address,
                 std::string_view channel_name = {}) {
  check_hello(received, make_hello<T>(std::string(channel_name)), address);
}

/// HELLO_NAK payload: the reason, which the receiver throws as TransportError.
inline void encode_hello_nak(ByteWriter& out, std::string_view reason) {
  detail::write_count(out, reason.size());
  out.put(reason.data(), reason.size());
}

[[nodiscard]] inline std::string decode_hello_nak(std::span<const std::byte> payload) {
  ByteReader in(payload);
  try {
    std::string reason = codec<std::string>::decode(in);
    in.expect_end("the HELLO_NAK reason");
    return reason;
  } catch (const TransportError& error) {
    throw TransportError(std::string(error.what()) + " (decoding HELLO_NAK)");
  }
}

}  // namespace csp::detail
