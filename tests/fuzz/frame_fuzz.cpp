// frame_fuzz.cpp: libFuzzer target for the wire frame decoder and the codecs.
// Whatever a peer sends must end in a frame, "need more bytes" or
// csp::TransportError: never a crash, an out-of-bounds read, another
// exception type or a huge allocation (libFuzzer's -rss_limit_mb catches those).
#include <csp/codec.hpp>
#include <csp/detail/frame.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace {

// Decoding, re-encoding and decoding again must reach a fixed point: what
// we accept we can also send, and the second encoding equals the first.
template <class T>
void check_codec(std::span<const std::byte> bytes) {
  try {
    const T value = csp::decode_all<T>(bytes);
    csp::ByteWriter first;
    csp::encode(first, value);
    const T again = csp::decode_all<T>(first.bytes());
    csp::ByteWriter second;
    csp::encode(second, again);
    if (first.size() != second.size() ||
        !std::equal(first.bytes().begin(), first.bytes().end(), second.bytes().begin()))
      std::abort();
  } catch (const csp::TransportError&) {
    // Rejected input is the expected outcome for most of it.
  }
}

void check_payload(std::span<const std::byte> payload) {
  check_codec<std::int32_t>(payload);
  check_codec<bool>(payload);
  check_codec<std::string>(payload);
  check_codec<std::vector<std::string>>(payload);
  check_codec<std::vector<bool>>(payload);
  check_codec<std::vector<std::tuple<>>>(payload);
  check_codec<std::map<std::int32_t, std::string>>(payload);
  check_codec<std::optional<std::pair<std::uint16_t, std::vector<double>>>>(payload);
  check_codec<std::variant<std::int64_t, std::string, std::map<std::string, std::optional<bool>>>>(
      payload);
  check_codec<std::array<std::vector<std::uint8_t>, 3>>(payload);
  try {
    const auto hello = csp::detail::decode_hello(payload);
    csp::detail::check_hello<std::vector<int>>(hello, "fuzz://");
  } catch (const csp::TransportError&) {
  }
  try {
    (void)csp::detail::decode_hello_nak(payload);
  } catch (const csp::TransportError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  check_payload(input);

  // The first byte picks the chunk size, so the fuzzer explores how a socket
  // splits the stream; a small payload cap keeps the limit path reachable.
  if (input.empty()) return 0;
  const std::size_t chunk = std::to_integer<std::size_t>(input[0]) % 17 + 1;
  const auto stream = input.subspan(1);
  csp::detail::FrameDecoder decoder(4096);
  try {
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      decoder.feed(stream.subspan(at, std::min(chunk, stream.size() - at)));
      while (auto frame = decoder.next()) {
        if (frame->payload.size() != frame->header.length) std::abort();
        check_payload(frame->payload);
      }
    }
  } catch (const csp::TransportError&) {
    if (!decoder.failed()) std::abort();
  }
  return 0;
}
