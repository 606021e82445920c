// Value frames of csp/transport/wire.hpp: build_value_frame writes the same
// bytes as encoding the frame field by field (begin_frame, the optional u64
// prefix, csp::codec, end_frame), whichever of its paths it takes (a small
// byte vector or string stored in place, a large one sent as an uncopied
// tail, any other type through its codec), and a payload over the frame
// limit is refused before anything is built. decode_payload, which reads a
// byte vector or string of a whole payload straight into the value, decodes
// what csp::decode_all decodes and refuses what it refuses.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <csp/codec.hpp>
#include <csp/detail/frame.hpp>
#include <csp/error.hpp>
#include <csp/transport/wire.hpp>

namespace {

using csp::detail::FrameKind;
using csp::transport_detail::build_value_frame;
using csp::transport_detail::OutFrame;

constexpr std::uint32_t kNoLimit = 0xFFFFFFFFu;

// The frame encoded field by field, as the peer's decoder reads it.
template <class T>
std::vector<std::byte> reference(FrameKind kind, std::uint32_t seq, std::uint8_t flags, const std::uint64_t* prefix,
                                 const T& value) {
  csp::ByteWriter out;
  const std::size_t start = csp::detail::begin_frame(out, kind, 0, seq, flags);
  if (prefix) out.put_u64(*prefix);
  csp::codec<T>::encode(out, value);
  csp::detail::end_frame(out, start, kNoLimit);
  return {out.data(), out.data() + out.size()};
}

// What build_value_frame sends: the head, then the tail (if any).
template <class T>
std::vector<std::byte> built(FrameKind kind, std::uint32_t seq, std::uint8_t flags, const std::uint64_t* prefix,
                             const T& value, bool* had_tail = nullptr) {
  csp::ByteWriter head;
  head.put_u8(0xEE);  // a frame may be built after other bytes: only what follows is the frame
  OutFrame frame{head};
  build_value_frame(frame, kind, seq, flags, prefix, value, kNoLimit);
  std::vector<std::byte> bytes(head.data() + 1, head.data() + head.size());
  const auto* tail = static_cast<const std::byte*>(frame.tail.data);
  bytes.insert(bytes.end(), tail, tail + frame.tail.size);
  if (had_tail) *had_tail = frame.tail.size != 0;
  return bytes;
}

std::vector<unsigned char> pattern(std::size_t size) {
  std::vector<unsigned char> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<unsigned char>(i * 7 + 3);
  return v;
}

TEST(ValueFrame, ByteVectorsOfEverySizeMatchTheFieldByFieldEncoding) {
  const std::uint64_t timeout = 0x0123456789ABCDEFull;
  const std::size_t tail_at = csp::transport_detail::wire_detail::kBulkTail;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{8}, std::size_t{64}, std::size_t{4096},
                           tail_at - 1, tail_at, tail_at + 5}) {
    const auto value = pattern(size);
    for (const std::uint64_t* prefix : {static_cast<const std::uint64_t*>(nullptr), &timeout}) {
      bool had_tail = false;
      EXPECT_EQ(built(FrameKind::write, 77, 1, prefix, value, &had_tail),
                reference(FrameKind::write, 77, 1, prefix, value))
          << size << " bytes, prefix " << (prefix != nullptr);
      EXPECT_EQ(had_tail, size >= tail_at) << size << " bytes";
    }
  }
}

TEST(ValueFrame, StringsAndOtherTypesMatchTheFieldByFieldEncoding) {
  const std::uint64_t epoch = 5;
  const std::string text = "a string value";
  EXPECT_EQ(built(FrameKind::read_data, 3, 0x20, &epoch, text), reference(FrameKind::read_data, 3, 0x20, &epoch, text));
  const std::vector<std::uint32_t> words{1, 2, 0xFFFFFFFFu};
  EXPECT_EQ(built(FrameKind::write, 9, 0, nullptr, words), reference(FrameKind::write, 9, 0, nullptr, words));
  const std::uint64_t number = 42;
  EXPECT_EQ(built(FrameKind::write, 9, 0, &epoch, number), reference(FrameKind::write, 9, 0, &epoch, number));
}

TEST(ValueFrame, HeaderDecodesToTheFrameBuilt) {
  const std::uint64_t timeout = 1000;
  const auto value = pattern(8);
  const auto bytes = built(FrameKind::write, 0xABCDEF01u, 1, &timeout, value);
  ASSERT_GE(bytes.size(), csp::detail::frame_header_size);
  const auto header = csp::detail::decode_frame_header(
      std::span<const std::byte, csp::detail::frame_header_size>(bytes.data(), csp::detail::frame_header_size),
      kNoLimit);
  EXPECT_EQ(header.kind, FrameKind::write);
  EXPECT_EQ(header.flags, 1);
  EXPECT_EQ(header.sequence, 0xABCDEF01u);
  EXPECT_EQ(header.length, bytes.size() - csp::detail::frame_header_size);
  csp::ByteReader payload(bytes.data() + csp::detail::frame_header_size, header.length);
  EXPECT_EQ(payload.get_u64(), timeout);
  EXPECT_EQ(csp::decode_all<std::vector<unsigned char>>(
                std::span<const std::byte>(bytes).subspan(csp::detail::frame_header_size + 8)),
            value);
}

TEST(ValueFrame, APayloadOverTheLimitIsRefused) {
  const std::uint64_t timeout = 0;
  const auto value = pattern(100);
  csp::ByteWriter head;
  OutFrame frame{head};
  // 8 (prefix) + 4 (count) + 100 bytes of payload: one byte over.
  EXPECT_THROW(build_value_frame(frame, FrameKind::write, 1, 0, &timeout, value, 111), csp::TransportError);
  csp::ByteWriter fits;
  OutFrame exact{fits};
  build_value_frame(exact, FrameKind::write, 1, 0, &timeout, value, 112);
  EXPECT_EQ(fits.size(), csp::detail::frame_header_size + 112);
}

// The payload of a value frame with `prefix_bytes` bytes before the value.
template <class T>
std::vector<std::byte> payload_of(const T& value, std::size_t prefix_bytes) {
  csp::ByteWriter out;
  for (std::size_t i = 0; i < prefix_bytes; ++i) out.put_u8(0x5A);
  csp::codec<T>::encode(out, value);
  return {out.data(), out.data() + out.size()};
}

template <class T>
T decoded(std::vector<std::byte> bytes, std::size_t offset) {
  csp::transport_detail::Payload payload{std::span<const std::byte>(bytes)};
  return csp::transport_detail::decode_payload<T>(payload, offset);
}

TEST(DecodePayload, BulkValuesDecodeAsTheCodecDoes) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{8}, std::size_t{64}, std::size_t{5000}}) {
    const auto bytes = pattern(size);
    for (std::size_t offset : {std::size_t{0}, std::size_t{8}}) {
      EXPECT_EQ(decoded<std::vector<unsigned char>>(payload_of(bytes, offset), offset), bytes) << size;
      const std::vector<char> chars(bytes.begin(), bytes.end());
      EXPECT_EQ(decoded<std::vector<char>>(payload_of(chars, offset), offset), chars) << size;
      const std::string text(bytes.begin(), bytes.end());
      EXPECT_EQ(decoded<std::string>(payload_of(text, offset), offset), text) << size;
      std::vector<std::uint32_t> words(size);
      for (std::size_t i = 0; i < size; ++i) words[i] = static_cast<std::uint32_t>(i * 2654435761u);
      EXPECT_EQ(decoded<std::vector<std::uint32_t>>(payload_of(words, offset), offset), words) << size;
    }
  }
  const std::vector<std::byte> raw{std::byte{1}, std::byte{0xFF}};
  EXPECT_EQ(decoded<std::vector<std::byte>>(payload_of(raw, 8), 8), raw);
  EXPECT_EQ(decoded<std::uint64_t>(payload_of(std::uint64_t{42}, 8), 8), 42u);  // the codec's path
}

TEST(DecodePayload, ACountThatDoesNotMatchThePayloadIsRefused) {
  const auto value = pattern(16);
  auto longer = payload_of(value, 8);
  longer.push_back(std::byte{0});  // a byte after the value
  EXPECT_THROW(decoded<std::vector<unsigned char>>(longer, 8), csp::TransportError);
  EXPECT_THROW(csp::decode_all<std::vector<unsigned char>>(std::span<const std::byte>(longer).subspan(8)),
               csp::TransportError);
  auto shorter = payload_of(value, 8);
  shorter.pop_back();  // the count claims one more byte than there is
  EXPECT_THROW(decoded<std::vector<unsigned char>>(shorter, 8), csp::TransportError);
  EXPECT_THROW(decoded<std::string>(shorter, 8), csp::TransportError);
  auto words = payload_of(std::vector<std::uint32_t>{1, 2, 3}, 0);
  words.pop_back();
  EXPECT_THROW(decoded<std::vector<std::uint32_t>>(words, 0), csp::TransportError);
  const std::vector<std::byte> no_count(8 + 3);  // not even the count after the prefix
  EXPECT_THROW(decoded<std::vector<unsigned char>>(no_count, 8), csp::TransportError);
}

}  // namespace
