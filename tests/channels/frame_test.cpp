// frame_test.cpp: the wire frame header, FrameDecoder reassembly and the HELLO handshake.
#include <csp/detail/frame.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using csp::detail::Frame;
using csp::detail::FrameDecoder;
using csp::detail::FrameHeader;
using csp::detail::FrameKind;

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> values) {
  std::vector<std::byte> bytes;
  for (unsigned value : values) bytes.push_back(static_cast<std::byte>(value));
  return bytes;
}

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> bytes;
  for (char c : text) bytes.push_back(static_cast<std::byte>(c));
  return bytes;
}

// A frame as the decoder should return it, owning its payload.
struct Expected {
  FrameHeader header;
  std::vector<std::byte> payload;
};

// A stream of frames of every kind, with empty, small and larger payloads.
std::vector<Expected> sample_frames() {
  std::vector<Expected> frames;
  std::uint32_t sequence = 0;
  for (std::uint8_t kind = 1; kind <= csp::detail::last_frame_kind; ++kind) {
    std::vector<std::byte> payload(kind % 3 == 0 ? 0 : kind * 37u);
    for (std::size_t i = 0; i < payload.size(); ++i)
      payload[i] = static_cast<std::byte>((i * 7 + kind) & 0xff);
    const FrameHeader header{static_cast<FrameKind>(kind), static_cast<std::uint8_t>(kind * 3),
                             1000u + kind, static_cast<std::uint32_t>(payload.size()),
                             ++sequence};
    frames.push_back({header, std::move(payload)});
  }
  return frames;
}

std::vector<std::byte> serialise(const std::vector<Expected>& frames) {
  csp::ByteWriter out;
  for (const auto& frame : frames)
    csp::detail::append_frame(out, frame.header.kind, frame.header.channel,
                              frame.header.sequence, frame.payload, frame.header.flags);
  return out.release();
}

void expect_frame(const Frame& actual, const Expected& expected) {
  EXPECT_EQ(actual.header, expected.header);
  EXPECT_TRUE(std::equal(actual.payload.begin(), actual.payload.end(), expected.payload.begin(),
                         expected.payload.end()));
}

// Feeds `stream` in chunks whose sizes come from `next_chunk`, collecting frames.
template <class ChunkSize>
void expect_reassembled(const std::vector<std::byte>& stream,
                        const std::vector<Expected>& expected, ChunkSize next_chunk) {
  FrameDecoder decoder;
  std::size_t received = 0;
  for (std::size_t at = 0; at < stream.size();) {
    const std::size_t size = std::min(next_chunk(), stream.size() - at);
    decoder.feed(std::span(stream.data() + at, size));
    at += size;
    while (auto frame = decoder.next()) {
      ASSERT_LT(received, expected.size());
      expect_frame(*frame, expected[received++]);
    }
  }
  EXPECT_EQ(received, expected.size());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameHeader, LayoutIsLittleEndian) {
  const FrameHeader header{FrameKind::write_ack, 0x5a, 0x01020304, 0x00000506, 0x0708090a};
  const auto bytes = csp::detail::encode_frame_header(header);
  EXPECT_EQ(std::vector<std::byte>(bytes.begin(), bytes.end()),
            bytes_of({0xf1, 0xc5, 5, 0x5a, 4, 3, 2, 1, 6, 5, 0, 0, 0xa, 9, 8, 7}));
  EXPECT_EQ(csp::detail::decode_frame_header(bytes), header);
}

TEST(FrameHeader, RejectsBadMagicKindAndLength) {
  auto bytes = csp::detail::encode_frame_header(FrameHeader{FrameKind::ping, 0, 1, 100, 2});
  auto bad_magic = bytes;
  bad_magic[0] = std::byte{0};
  EXPECT_THROW((void)csp::detail::decode_frame_header(bad_magic), csp::TransportError);
  for (unsigned kind : {0u, csp::detail::last_frame_kind + 1u, 255u}) {
    auto bad_kind = bytes;
    bad_kind[2] = static_cast<std::byte>(kind);
    EXPECT_THROW((void)csp::detail::decode_frame_header(bad_kind), csp::TransportError) << kind;
  }
  EXPECT_NO_THROW((void)csp::detail::decode_frame_header(bytes, 100));
  EXPECT_THROW((void)csp::detail::decode_frame_header(bytes, 99), csp::TransportError);

  auto too_long = csp::detail::encode_frame_header(
      FrameHeader{FrameKind::write, 0, 1, csp::detail::default_max_frame_payload + 1, 0});
  try {
    (void)csp::detail::decode_frame_header(too_long);
    FAIL() << "oversized frame accepted";
  } catch (const csp::TransportError& error) {
    EXPECT_NE(std::string(error.what()).find("WRITE frame payload"), std::string::npos)
        << error.what();
  }
}

TEST(FrameKind, Names) {
  EXPECT_EQ(csp::detail::frame_kind_name(FrameKind::hello), "HELLO");
  EXPECT_EQ(csp::detail::frame_kind_name(FrameKind::select_cancel), "SELECT_CANCEL");
  EXPECT_EQ(csp::detail::frame_kind_name(FrameKind::ping), "PING");
  EXPECT_FALSE(csp::detail::is_frame_kind(0));
  EXPECT_EQ(csp::detail::frame_kind_name(FrameKind::consumed), "CONSUMED");
  EXPECT_TRUE(csp::detail::is_frame_kind(17));
  EXPECT_FALSE(csp::detail::is_frame_kind(18));
}

TEST(FrameDecoder, WholeStreamAtOnce) {
  const auto frames = sample_frames();
  const auto stream = serialise(frames);
  expect_reassembled(stream, frames, [&] { return stream.size(); });
}

TEST(FrameDecoder, OneByteAtATime) {
  const auto frames = sample_frames();
  const auto stream = serialise(frames);
  expect_reassembled(stream, frames, [] { return std::size_t{1}; });
}

TEST(FrameDecoder, RandomChunks) {
  const auto frames = sample_frames();
  const auto stream = serialise(frames);
  std::mt19937 random(12345);
  for (int run = 0; run < 50; ++run) {
    std::uniform_int_distribution<std::size_t> size(1, 64);
    expect_reassembled(stream, frames, [&] { return size(random); });
  }
}

TEST(FrameDecoder, PrepareAndCommit) {
  const auto frames = sample_frames();
  const auto stream = serialise(frames);
  FrameDecoder decoder;
  std::size_t received = 0;
  for (std::size_t at = 0; at < stream.size();) {
    // Like read(2): ask for 100, get up to 13.
    auto space = decoder.prepare(100);
    const std::size_t got = std::min<std::size_t>(13, stream.size() - at);
    std::memcpy(space.data(), stream.data() + at, got);
    decoder.commit(got);
    at += got;
    while (auto frame = decoder.next()) expect_frame(*frame, frames.at(received++));
  }
  EXPECT_EQ(received, frames.size());
  (void)decoder.prepare(4);
  EXPECT_THROW(decoder.commit(5), std::logic_error);
}

TEST(FrameDecoder, WaitsForPartialFrames) {
  csp::ByteWriter out;
  csp::detail::append_frame(out, FrameKind::write, 3, 9, bytes_of("payload"));
  const auto stream = out.release();
  FrameDecoder decoder;
  decoder.feed(std::span(stream.data(), 15));
  EXPECT_FALSE(decoder.next());
  decoder.feed(std::span(stream.data() + 15, stream.size() - 16));
  EXPECT_FALSE(decoder.next());
  decoder.feed(std::span(stream.data() + stream.size() - 1, 1));
  auto frame = decoder.next();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->header.kind, FrameKind::write);
  EXPECT_EQ(frame->payload.size(), 7u);
  EXPECT_FALSE(decoder.next());
}

TEST(FrameDecoder, GarbageRejectedAndSticky) {
  FrameDecoder decoder;
  const auto garbage = bytes_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  decoder.feed(garbage);
  EXPECT_THROW((void)decoder.next(), csp::TransportError);
  EXPECT_TRUE(decoder.failed());
  // A stream cannot be resynchronised: even a valid frame after it is refused.
  csp::ByteWriter out;
  csp::detail::append_frame(out, FrameKind::ping, 0, 0);
  decoder.feed(out.bytes());
  EXPECT_THROW((void)decoder.next(), csp::TransportError);
}

TEST(FrameDecoder, GarbageAfterValidFramesNamesTheOffset) {
  csp::ByteWriter out;
  csp::detail::append_frame(out, FrameKind::ping, 0, 0);
  out.put_u32(0xdeadbeef);
  out.skip(12);
  FrameDecoder decoder;
  decoder.feed(out.bytes());
  EXPECT_TRUE(decoder.next());
  try {
    (void)decoder.next();
    FAIL() << "garbage accepted";
  } catch (const csp::TransportError& error) {
    EXPECT_NE(std::string(error.what()).find("stream offset 16"), std::string::npos)
        << error.what();
  }
}

TEST(FrameDecoder, OversizedHeaderRejectedBeforeItsPayload) {
  FrameDecoder decoder(1024);
  const auto header =
      csp::detail::encode_frame_header(FrameHeader{FrameKind::write, 0, 1, 1025, 0});
  decoder.feed(header);  // no payload: must not wait for 1025 bytes
  EXPECT_THROW((void)decoder.next(), csp::TransportError);
  EXPECT_EQ(decoder.max_payload(), 1024u);
}

TEST(FrameDecoder, UnknownKindRejectedOneByteAtATime) {
  auto header = csp::detail::encode_frame_header(FrameHeader{FrameKind::ping, 0, 0, 0, 0});
  header[2] = std::byte{99};
  FrameDecoder decoder;
  for (std::size_t i = 0; i + 1 < header.size(); ++i) {
    decoder.feed(std::span(header.data() + i, 1));
    EXPECT_FALSE(decoder.next());
  }
  decoder.feed(std::span(header.data() + header.size() - 1, 1));
  EXPECT_THROW((void)decoder.next(), csp::TransportError);
}

TEST(FrameBuilder, ValueFrameRoundTrip) {
  csp::ByteWriter out;
  const std::vector<std::string> value{"alpha", "beta"};
  csp::detail::append_value_frame(out, FrameKind::write, 7, 42, value);
  csp::detail::append_value_frame(out, FrameKind::read_data, 7, 43, std::int64_t{-9}, 1);
  FrameDecoder decoder;
  decoder.feed(out.bytes());
  auto first = decoder.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header, (FrameHeader{FrameKind::write, 0, 7, first->header.length, 42}));
  EXPECT_EQ(csp::decode_all<std::vector<std::string>>(first->payload), value);
  auto second = decoder.next();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->header.flags, 1);
  EXPECT_EQ(csp::decode_all<std::int64_t>(second->payload), -9);
}

TEST(FrameBuilder, OversizedPayloadRefusedBeforeSending) {
  csp::ByteWriter out;
  const std::string big(2000, 'x');
  EXPECT_THROW(csp::detail::append_value_frame(out, FrameKind::write, 1, 1, big, 0, 1000),
               csp::TransportError);
}

TEST(Hello, RoundTrip) {
  const auto hello = csp::detail::make_hello<std::vector<int>>("jobs");
  EXPECT_EQ(hello.version, csp::detail::protocol_version);
  EXPECT_EQ(hello.fingerprint, csp::type_fingerprint<std::vector<int>>());
  EXPECT_EQ(hello.type_name, "vector<i32>");
  EXPECT_EQ(hello.channel_name, "jobs");
  csp::ByteWriter out;
  csp::detail::encode_hello(out, hello);
  EXPECT_EQ(csp::detail::decode_hello(out.bytes()), hello);
}

TEST(Hello, TruncatedOrPaddedRejected) {
  csp::ByteWriter out;
  csp::detail::encode_hello(out, csp::detail::make_hello<std::string>("names"));
  const auto bytes = out.release();
  for (std::size_t size = 0; size < bytes.size(); ++size)
    EXPECT_THROW((void)csp::detail::decode_hello(std::span(bytes.data(), size)),
                 csp::TransportError)
        << size;
  auto padded = bytes;
  padded.push_back(std::byte{0});
  EXPECT_THROW((void)csp::detail::decode_hello(padded), csp::TransportError);
}

TEST(Hello, OtherVersionDecodesToAVersionMismatch) {
  csp::ByteWriter out;
  out.put_u32(csp::detail::protocol_version + 1);
  out.put_u8(0xee);  // a future layout we cannot parse
  const auto received = csp::detail::decode_hello(out.bytes());
  EXPECT_EQ(received.version, csp::detail::protocol_version + 1);
  try {
    csp::detail::check_hello<int>(received, "tcp://127.0.0.1:7000/jobs", "jobs");
    FAIL() << "version mismatch accepted";
  } catch (const csp::TransportError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("protocol version"), std::string::npos) << message;
    EXPECT_NE(message.find("tcp://127.0.0.1:7000/jobs"), std::string::npos) << message;
  }
}

TEST(Hello, CheckAcceptsTheSameType) {
  const auto received = csp::detail::make_hello<std::map<std::string, double>>("prices");
  EXPECT_NO_THROW(
      (csp::detail::check_hello<std::map<std::string, double>>(received, "unix:///tmp/s")));
}

TEST(Hello, CheckNamesBothTypesAndTheAddress) {
  const auto received = csp::detail::make_hello<std::vector<long>>("jobs");
  try {
    csp::detail::check_hello<std::vector<int>>(received, "tcp://127.0.0.1:7000/jobs", "jobs");
    FAIL() << "type mismatch accepted";
  } catch (const csp::TransportError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("vector<i64>"), std::string::npos) << message;
    EXPECT_NE(message.find("vector<i32>"), std::string::npos) << message;
    EXPECT_NE(message.find("tcp://127.0.0.1:7000/jobs"), std::string::npos) << message;
    EXPECT_NE(message.find("'jobs'"), std::string::npos) << message;
  }
}

TEST(Hello, NakCarriesTheReason) {
  csp::ByteWriter out;
  csp::detail::encode_hello_nak(out, "element type mismatch");
  EXPECT_EQ(csp::detail::decode_hello_nak(out.bytes()), "element type mismatch");
  EXPECT_THROW((void)csp::detail::decode_hello_nak(bytes_of({9, 0, 0, 0, 'x'})),
               csp::TransportError);
}

}  // namespace
