// codec_test.cpp: csp::codec round trips, hostile input and type fingerprints.
#include <csp/codec.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace {

struct Point {
  std::int32_t x;
  std::int32_t y;
  friend bool operator==(const Point&, const Point&) = default;
};

enum class Colour : std::uint8_t { red, green, blue };

// Trivially copyable without a default constructor: decoding must not need one.
struct Meters {
  explicit Meters(double value) : value_(value) {}
  double value_;  // the length
  friend bool operator==(const Meters&, const Meters&) = default;
};

// A user type with its own codec and a stable name.
struct Job {
  std::string command;
  std::vector<std::string> arguments;
  int priority = 0;
  friend bool operator==(const Job&, const Job&) = default;
};

// A user type with its own codec but no name: named by the compiler.
struct Tag {
  std::string text;
  friend bool operator==(const Tag&, const Tag&) = default;
};

// Not trivially copyable and no codec: must not be Codable.
struct Opaque {
  std::string text;
};

}  // namespace

template <>
struct csp::codec<Job> {
  static constexpr std::string_view name = "Job/1";
  static void encode(ByteWriter& out, const Job& job) {
    csp::encode(out, job.command);
    csp::encode(out, job.arguments);
    csp::encode(out, job.priority);
  }
  static Job decode(ByteReader& in) {
    Job job;
    job.command = csp::decode<std::string>(in);
    job.arguments = csp::decode<std::vector<std::string>>(in);
    job.priority = csp::decode<int>(in);
    return job;
  }
};

template <>
struct csp::codec<Tag> {
  static void encode(ByteWriter& out, const Tag& tag) { csp::encode(out, tag.text); }
  static Tag decode(ByteReader& in) { return Tag{csp::decode<std::string>(in)}; }
};

namespace {

static_assert(csp::Codable<int>);
static_assert(csp::Codable<Point>);
static_assert(csp::Codable<Colour>);
static_assert(csp::Codable<Meters>);
static_assert(csp::Codable<Job>);
static_assert(csp::Codable<std::map<std::string, std::vector<std::optional<Job>>>>);
static_assert(!csp::Codable<int*>);
static_assert(!csp::Codable<std::string_view>);
static_assert(!csp::Codable<std::span<int>>);
static_assert(!csp::Codable<Opaque>);
static_assert(!csp::Codable<std::vector<Opaque>>);
static_assert(!csp::Codable<std::pair<int, int*>>);
static_assert(!csp::Codable<std::variant<int, Opaque>>);

// The fingerprint is usable at compile time, e.g. in a static_assert.
static_assert(csp::type_fingerprint<int>() != csp::type_fingerprint<unsigned>());

template <class T>
std::vector<std::byte> encoded(const T& value) {
  csp::ByteWriter out;
  csp::encode(out, value);
  return out.release();
}

template <class T>
T round_trip(const T& value) {
  const auto bytes = encoded(value);
  return csp::decode_all<T>(bytes);
}

// Every strict prefix of a valid encoding must be rejected, and every
// extension by a byte must be rejected by decode_all.
template <class T>
void expect_truncations_rejected(const T& value) {
  const auto bytes = encoded(value);
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    SCOPED_TRACE("prefix of " + std::to_string(size) + " of " + std::to_string(bytes.size()) +
                 " bytes, " + csp::type_name<T>());
    EXPECT_THROW((void)csp::decode_all<T>(std::span(bytes.data(), size)), csp::TransportError);
    csp::ByteReader in(bytes.data(), size);
    EXPECT_THROW((void)csp::decode<T>(in), csp::TransportError);
  }
  auto longer = bytes;
  longer.push_back(std::byte{0});
  EXPECT_THROW((void)csp::decode_all<T>(longer), csp::TransportError);
}

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> values) {
  std::vector<std::byte> bytes;
  for (unsigned value : values) bytes.push_back(static_cast<std::byte>(value));
  return bytes;
}

std::uint64_t reference_fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

TEST(Codec, ArithmeticRoundTrip) {
  EXPECT_EQ(round_trip<std::int8_t>(-5), -5);
  EXPECT_EQ(round_trip<std::uint8_t>(250), 250);
  EXPECT_EQ(round_trip<std::int16_t>(-30000), -30000);
  EXPECT_EQ(round_trip<std::uint16_t>(65000), 65000);
  EXPECT_EQ(round_trip<std::int32_t>(-2'000'000'000), -2'000'000'000);
  EXPECT_EQ(round_trip<std::uint32_t>(4'000'000'000u), 4'000'000'000u);
  EXPECT_EQ(round_trip<std::int64_t>(INT64_MIN), INT64_MIN);
  EXPECT_EQ(round_trip<std::uint64_t>(UINT64_MAX), UINT64_MAX);
  EXPECT_EQ(round_trip('x'), 'x');
  EXPECT_EQ(round_trip(1.5f), 1.5f);
  EXPECT_EQ(round_trip(-2.25), -2.25);
  EXPECT_EQ(round_trip(true), true);
  EXPECT_EQ(round_trip(false), false);
  EXPECT_EQ(round_trip(Colour::blue), Colour::blue);
  EXPECT_EQ(encoded(std::int32_t{7}).size(), 4u);
}

TEST(Codec, RawStructRoundTrip) {
  EXPECT_EQ(round_trip(Point{-1, 42}), (Point{-1, 42}));
  EXPECT_EQ(round_trip(Meters{3.5}), Meters{3.5});
  EXPECT_EQ(encoded(Point{1, 2}).size(), sizeof(Point));
}

TEST(Codec, StringRoundTrip) {
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(round_trip(std::string("hello")), "hello");
  const std::string with_nuls("a\0b\0", 4);
  EXPECT_EQ(round_trip(with_nuls), with_nuls);
  const std::string long_text(100'000, 'z');
  EXPECT_EQ(round_trip(long_text), long_text);
  // The length prefix is a little-endian u32 on every host.
  EXPECT_EQ(encoded(std::string("ab")), bytes_of({2, 0, 0, 0, 'a', 'b'}));
}

TEST(Codec, VectorRoundTrip) {
  EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
  EXPECT_EQ(round_trip(std::vector<int>{1, -2, 3}), (std::vector<int>{1, -2, 3}));
  EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "ccc"}),
            (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(round_trip(std::vector<Point>{{1, 2}, {3, 4}}), (std::vector<Point>{{1, 2}, {3, 4}}));
  EXPECT_EQ(round_trip(std::vector<Meters>{Meters{1}, Meters{2}}),
            (std::vector<Meters>{Meters{1}, Meters{2}}));
  EXPECT_EQ(round_trip(std::vector<std::vector<int>>{{}, {1}, {2, 3}}),
            (std::vector<std::vector<int>>{{}, {1}, {2, 3}}));
  EXPECT_EQ(encoded(std::vector<std::uint16_t>{1, 2}), bytes_of({2, 0, 0, 0, 1, 0, 2, 0}));
}

TEST(Codec, ArrayRoundTrip) {
  EXPECT_EQ(round_trip(std::array<int, 4>{1, 2, 3, 4}), (std::array<int, 4>{1, 2, 3, 4}));
  EXPECT_EQ(round_trip(std::array<int, 0>{}), (std::array<int, 0>{}));
  EXPECT_EQ(round_trip(std::array<std::string, 2>{"x", "yy"}),
            (std::array<std::string, 2>{"x", "yy"}));
  EXPECT_EQ(round_trip(std::array<Meters, 2>{Meters{1}, Meters{2}}),
            (std::array<Meters, 2>{Meters{1}, Meters{2}}));
  EXPECT_EQ(round_trip(std::array<bool, 3>{true, false, true}),
            (std::array<bool, 3>{true, false, true}));
  // No count: the size is part of the type.
  EXPECT_EQ(encoded(std::array<std::uint8_t, 3>{1, 2, 3}).size(), 3u);
}

TEST(Codec, PairTupleRoundTrip) {
  EXPECT_EQ(round_trip(std::pair<int, std::string>{7, "seven"}),
            (std::pair<int, std::string>{7, "seven"}));
  EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
  EXPECT_EQ(round_trip(std::tuple<int, double, std::string>{1, 2.5, "three"}),
            (std::tuple<int, double, std::string>{1, 2.5, "three"}));
  EXPECT_EQ(round_trip(std::tuple<Meters, bool>{Meters{2}, true}),
            (std::tuple<Meters, bool>{Meters{2}, true}));
}

TEST(Codec, OptionalRoundTrip) {
  EXPECT_EQ(round_trip(std::optional<int>{}), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<int>{5}), 5);
  EXPECT_EQ(round_trip(std::optional<std::string>{"s"}), "s");
  EXPECT_EQ(round_trip(std::optional<std::optional<int>>{std::optional<int>{}}),
            std::optional<std::optional<int>>{std::optional<int>{}});
}

TEST(Codec, MapRoundTrip) {
  const std::map<std::string, int> ages{{"ann", 31}, {"bob", 42}, {"", 0}};
  EXPECT_EQ(round_trip(ages), ages);
  EXPECT_EQ(round_trip(std::map<int, int>{}), (std::map<int, int>{}));
  const std::map<int, std::vector<std::string>, std::greater<>> reversed{{1, {"a"}}, {2, {}}};
  EXPECT_EQ(round_trip(reversed), reversed);
}

TEST(Codec, VariantRoundTrip) {
  using V = std::variant<int, std::string, Point>;
  EXPECT_EQ(round_trip(V{3}), V{3});
  EXPECT_EQ(round_trip(V{std::string("text")}), V{std::string("text")});
  EXPECT_EQ(round_trip(V{Point{1, 2}}), (V{Point{1, 2}}));
  using Twins = std::variant<int, int>;
  const Twins second{std::in_place_index<1>, 9};
  EXPECT_EQ(round_trip(second).index(), 1u);
  EXPECT_EQ(round_trip(second), second);
  EXPECT_EQ(round_trip(std::variant<std::monostate, int>{}),
            (std::variant<std::monostate, int>{}));
}

TEST(Codec, NestedRoundTrip) {
  using Nested =
      std::map<std::string, std::vector<std::optional<std::variant<int, std::string,
                                                                  std::tuple<double, Point>>>>>;
  const Nested value{
      {"one", {std::nullopt, 1, std::string("x"), std::tuple<double, Point>{0.5, {3, 4}}}},
      {"two", {}},
  };
  EXPECT_EQ(round_trip(value), value);
  expect_truncations_rejected(value);

  using Grid = std::array<std::pair<std::vector<bool>, std::optional<Colour>>, 2>;
  const Grid grid{{{{true, false}, Colour::green}, {{}, std::nullopt}}};
  EXPECT_EQ(round_trip(grid), grid);
}

TEST(Codec, UserCodecRoundTrip) {
  const Job job{"make", {"-j", "8"}, 3};
  EXPECT_EQ(round_trip(job), job);
  EXPECT_EQ(round_trip(std::vector<Job>{job, Job{}}), (std::vector<Job>{job, Job{}}));
  EXPECT_EQ(round_trip(Tag{"t"}), Tag{"t"});
  expect_truncations_rejected(job);
}

TEST(Codec, TruncationAtEveryPositionThrows) {
  expect_truncations_rejected(std::int64_t{-1});
  expect_truncations_rejected(true);
  expect_truncations_rejected(Point{1, 2});
  expect_truncations_rejected(std::string("truncate me"));
  expect_truncations_rejected(std::vector<int>{1, 2, 3});
  expect_truncations_rejected(std::vector<std::string>{"a", "bc"});
  expect_truncations_rejected(std::vector<bool>{true, false});
  expect_truncations_rejected(std::array<std::string, 2>{"p", "q"});
  expect_truncations_rejected(std::pair<int, std::string>{1, "x"});
  expect_truncations_rejected(std::tuple<char, double, std::string>{'c', 1.0, "s"});
  expect_truncations_rejected(std::optional<int>{4});
  expect_truncations_rejected(std::optional<int>{});
  expect_truncations_rejected(std::map<int, std::string>{{1, "a"}, {2, "b"}});
  expect_truncations_rejected(std::variant<int, std::string>{std::string("v")});
}

TEST(Codec, HostileLengthsRejectedWithoutAllocating) {
  // Counts of 2^32-1 with almost nothing behind them: rejected by the
  // remaining-bytes cap, before any reserve (a 16 GiB reserve would throw
  // bad_alloc, not TransportError).
  const auto huge = bytes_of({0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4});
  EXPECT_THROW((void)csp::decode_all<std::string>(huge), csp::TransportError);
  EXPECT_THROW((void)csp::decode_all<std::vector<int>>(huge), csp::TransportError);
  EXPECT_THROW((void)csp::decode_all<std::vector<std::string>>(huge), csp::TransportError);
  EXPECT_THROW((void)csp::decode_all<std::vector<std::vector<int>>>(huge), csp::TransportError);
  EXPECT_THROW((void)(csp::decode_all<std::map<int, int>>(huge)), csp::TransportError);
  EXPECT_THROW((void)csp::decode_all<std::vector<bool>>(huge), csp::TransportError);
  // Elements that encode to nothing: a fixed cap instead.
  EXPECT_THROW((void)csp::decode_all<std::vector<std::tuple<>>>(huge), csp::TransportError);
  EXPECT_EQ(round_trip(std::vector<std::tuple<>>(1000)).size(), 1000u);
  EXPECT_EQ(round_trip(std::vector<std::array<int, 0>>(3)).size(), 3u);

  // A count that fits the bytes but not the elements: each int needs 4.
  const auto five_ints_claimed = bytes_of({5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0});
  EXPECT_THROW((void)csp::decode_all<std::vector<int>>(five_ints_claimed), csp::TransportError);
}

TEST(Codec, MalformedTagsRejected) {
  EXPECT_THROW((void)csp::decode_all<bool>(bytes_of({2})), csp::TransportError);
  EXPECT_THROW((void)csp::decode_all<std::optional<int>>(bytes_of({7, 0, 0, 0, 0})),
               csp::TransportError);
  using V = std::variant<int, std::string>;
  try {
    (void)csp::decode_all<V>(bytes_of({2, 0, 0, 0, 0, 0, 0, 0}));
    FAIL() << "variant index 2 of 2 accepted";
  } catch (const csp::TransportError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("variant index 2"), std::string::npos) << message;
    EXPECT_NE(message.find("variant<i32,string>"), std::string::npos) << message;
  }
  EXPECT_THROW((void)csp::decode_all<V>(bytes_of({0xff, 0xff, 0xff, 0xff})), csp::TransportError);
  // Two entries with the same key 1.
  const auto duplicate = bytes_of({2, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 0});
  EXPECT_THROW((void)(csp::decode_all<std::map<int, int>>(duplicate)), csp::TransportError);
}

TEST(Codec, DecodeAllNamesTheType) {
  try {
    (void)csp::decode_all<std::vector<std::int32_t>>(bytes_of({1, 0}));
    FAIL() << "truncated input accepted";
  } catch (const csp::TransportError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
    EXPECT_NE(message.find("vector<i32>"), std::string::npos) << message;
  }
}

TEST(Codec, DecodeLeavesTheRest) {
  csp::ByteWriter out;
  csp::encode(out, std::string("first"));
  csp::encode(out, 42);
  csp::ByteReader in(out.bytes());
  EXPECT_EQ(csp::decode<std::string>(in), "first");
  EXPECT_EQ(csp::decode<int>(in), 42);
  EXPECT_TRUE(in.empty());
}

TEST(Codec, WriterReuseKeepsCapacity) {
  csp::ByteWriter out;
  csp::encode(out, std::vector<int>(64, 1));
  const auto* storage = out.data();
  for (int i = 0; i < 100; ++i) {
    out.clear();
    csp::encode(out, i);
    csp::encode(out, Point{i, i});
  }
  EXPECT_EQ(out.data(), storage);
  EXPECT_EQ(out.size(), sizeof(int) + sizeof(Point));
}

TEST(Codec, WriterPatch) {
  csp::ByteWriter out;
  const std::size_t at = out.skip(4);
  out.put_u8(9);
  const std::uint32_t value = 0x01020304;
  out.patch(at, &value, sizeof value);
  csp::ByteReader in(out.bytes());
  std::uint32_t read_back = 0;
  in.get(&read_back, sizeof read_back);
  EXPECT_EQ(read_back, value);
  EXPECT_THROW(out.patch(3, &value, sizeof value), std::out_of_range);
}

TEST(Codec, WriterSkipZeroesReusedStorage) {
  csp::ByteWriter out;
  out.put_u64(~std::uint64_t{0});
  out.clear();
  const std::size_t at = out.skip(8);  // over the ones written before clear()
  ASSERT_EQ(at, 0u);
  for (std::byte b : out.bytes()) EXPECT_EQ(b, std::byte{0});
}

TEST(Codec, WriterExtendGrowsAndKeepsWhatWasWritten) {
  csp::ByteWriter out;
  out.put_u32(0x11223344);
  std::byte* p = out.extend(100000);  // far past the first storage
  std::memset(p, 0x5A, 100000);
  out.put_u8(7);
  ASSERT_EQ(out.size(), 4u + 100000u + 1u);
  csp::ByteReader in(out.bytes());
  EXPECT_EQ(in.get_u32(), 0x11223344u);
  const auto middle = in.take(100000);
  EXPECT_TRUE(std::all_of(middle.begin(), middle.end(), [](std::byte b) { return b == std::byte{0x5A}; }));
  EXPECT_EQ(in.get_u8(), 7u);
  EXPECT_TRUE(in.empty());
}

TEST(Codec, WriterReleaseHandsOverExactlyTheWrittenBytes) {
  csp::ByteWriter out;
  out.reserve(4096);
  out.put_u16(0xBEEF);
  std::vector<std::byte> bytes = out.release();
  ASSERT_EQ(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], std::byte{0xEF});
  EXPECT_EQ(bytes[1], std::byte{0xBE});
  EXPECT_TRUE(out.empty());
  out.put_u8(1);  // usable again
  EXPECT_EQ(out.size(), 1u);
  // Adopting storage discards its contents.
  csp::ByteWriter adopted(std::move(bytes));
  EXPECT_TRUE(adopted.empty());
  adopted.put_u8(9);
  ASSERT_EQ(adopted.bytes().size(), 1u);
  EXPECT_EQ(adopted.bytes()[0], std::byte{9});
}

TEST(Codec, ReaderIntegersAreLittleEndian) {
  csp::ByteWriter out;
  out.put_u16(0x0102);
  out.put_u32(0x03040506);
  out.put_u64(0x0708090a0b0c0d0eull);
  EXPECT_EQ(std::vector<std::byte>(out.bytes().begin(), out.bytes().end()),
            bytes_of({2, 1, 6, 5, 4, 3, 0xe, 0xd, 0xc, 0xb, 0xa, 9, 8, 7}));
  csp::ByteReader in(out.bytes());
  EXPECT_EQ(in.get_u16(), 0x0102);
  EXPECT_EQ(in.get_u32(), 0x03040506u);
  EXPECT_EQ(in.get_u64(), 0x0708090a0b0c0d0eull);
  EXPECT_THROW((void)in.get_u8(), csp::TransportError);
}

TEST(TypeName, Structural) {
  EXPECT_EQ(csp::type_name<std::int32_t>(), "i32");
  EXPECT_EQ(csp::type_name<std::uint64_t>(), "u64");
  EXPECT_EQ(csp::type_name<double>(), "f64");
  EXPECT_EQ(csp::type_name<float>(), "f32");
  EXPECT_EQ(csp::type_name<bool>(), "bool");
  EXPECT_EQ(csp::type_name<char>(), "char");
  EXPECT_EQ(csp::type_name<std::string>(), "string");
  EXPECT_EQ(csp::type_name<std::vector<std::int32_t>>(), "vector<i32>");
  EXPECT_EQ((csp::type_name<std::array<std::uint8_t, 16>>()), "array<u8,16>");
  EXPECT_EQ((csp::type_name<std::map<std::string, double>>()), "map<string,f64>");
  EXPECT_EQ((csp::type_name<std::tuple<>>()), "tuple<>");
  EXPECT_EQ((csp::type_name<std::tuple<std::int8_t, std::string, bool>>()), "tuple<i8,string,bool>");
  EXPECT_EQ((csp::type_name<std::pair<std::int16_t, std::optional<std::string>>>()),
            "pair<i16,optional<string>>");
  EXPECT_EQ((csp::type_name<std::variant<std::int32_t, std::vector<std::string>>>()),
            "variant<i32,vector<string>>");
  EXPECT_EQ(csp::type_name<Job>(), "Job/1");
  EXPECT_EQ(csp::type_name<std::vector<Job>>(), "vector<Job/1>");
  // Raw user types: compiler name plus size and alignment.
  EXPECT_NE(csp::type_name<Point>().find("Point{s8a4"), std::string::npos)
      << csp::type_name<Point>();
  EXPECT_NE(csp::type_name<Tag>().find("Tag{s"), std::string::npos) << csp::type_name<Tag>();
}

TEST(TypeFingerprint, DistinguishesTypes) {
  const std::uint64_t fingerprints[] = {
      csp::type_fingerprint<int>(),
      csp::type_fingerprint<long>(),
      csp::type_fingerprint<std::vector<int>>(),
      csp::type_fingerprint<std::vector<long>>(),
      csp::type_fingerprint<unsigned>(),
      csp::type_fingerprint<float>(),
      csp::type_fingerprint<std::string>(),
      csp::type_fingerprint<std::vector<char>>(),
      csp::type_fingerprint<std::optional<int>>(),
      csp::type_fingerprint<std::array<int, 1>>(),
      csp::type_fingerprint<std::tuple<int>>(),
      csp::type_fingerprint<std::pair<int, long>>(),
      csp::type_fingerprint<std::pair<long, int>>(),
      csp::type_fingerprint<std::variant<int, long>>(),
      csp::type_fingerprint<Point>(),
      csp::type_fingerprint<Colour>(),
      csp::type_fingerprint<Job>(),
      csp::type_fingerprint<Tag>(),
  };
  for (std::size_t i = 0; i < std::size(fingerprints); ++i)
    for (std::size_t j = i + 1; j < std::size(fingerprints); ++j)
      EXPECT_NE(fingerprints[i], fingerprints[j]) << i << " vs " << j;
}

TEST(TypeFingerprint, StableAndStructural) {
  EXPECT_EQ(csp::type_fingerprint<std::vector<int>>(),
            (csp::type_fingerprint<std::vector<int>>()));
  // Same wire format, same fingerprint, whatever the spelling.
  EXPECT_EQ(csp::type_fingerprint<long long>(), csp::type_fingerprint<std::int64_t>());
  EXPECT_EQ(csp::type_fingerprint<std::vector<int>>(),
            (csp::type_fingerprint<std::vector<int, std::allocator<int>>>()));
  // Pinned to FNV-1a of the name, so it cannot drift between builds.
  EXPECT_EQ(reference_fnv1a("a"), 0xaf63dc4c8601ec8cull);  // published FNV-1a test vector
  EXPECT_EQ(csp::type_fingerprint<std::vector<std::int32_t>>(), reference_fnv1a("vector<i32>"));
  EXPECT_EQ(csp::type_fingerprint<Point>(), reference_fnv1a(csp::type_name<Point>()));
  constexpr std::uint64_t at_compile_time = csp::type_fingerprint<std::map<std::string, Job>>();
  EXPECT_EQ(at_compile_time, reference_fnv1a("map<string,Job/1>"));
}

}  // namespace
