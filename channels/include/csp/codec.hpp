// csp/codec.hpp: how a channel's element type crosses a process boundary.
//
// `csp::codec<T>` is the customisation point: it turns a T into bytes in a
// ByteWriter and back from a ByteReader. Built in: trivially copyable types
// (as raw bytes), bool, std::string, std::vector, std::array, std::pair,
// std::tuple, std::optional, std::map and std::variant of codable types. A
// user type specialises the template:
//
//   template <> struct csp::codec<Job> {
//     static constexpr std::string_view name = "Job/1";       // optional
//     static void encode(csp::ByteWriter& out, const Job& job);
//     static Job decode(csp::ByteReader& in);
//   };
//
// Contract:
// - Decoding never trusts its input: every read is bounds-checked, every
//   length is capped by the bytes that remain (so a hostile length cannot
//   trigger a huge allocation), every tag is range-checked. Bad input throws
//   csp::TransportError; it never reads out of bounds.
// - Raw-byte types are copied as the host lays them out, so both ends must
//   share the ABI; the fingerprint covers size, alignment and byte order so
//   a mismatch fails the handshake instead of misreading values. A raw struct
//   holding a bool or a pointer cannot be validated: give such a type its own
//   codec. Plain pointers, std::span and std::string_view are not codable.
// - Lengths, counts and tags are little-endian u32 whatever the host.
// - `type_fingerprint<T>()` is FNV-1a over `type_name<T>()`, a structural
//   name ("vector<i32>", "map<string,f64>"); user types contribute
//   `codec<T>::name` if given, else their compiler-spelled name with size and
//   alignment. The compiler spelling is stable across builds of one program;
//   give `name` when the two ends are built by different compilers.
// - Specialise codec<T> before the first use of Codable<T>: the concept's
//   answer is fixed at its first check.
#pragma once

#include <csp/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace csp {

/// Growable output buffer for encoding. Reuse one writer (clear() keeps its
/// storage) so steady-state encoding of small values does not allocate.
///
/// The written bytes are a prefix of storage that only grows: clear() and
/// release() aside, no call shrinks or zero-fills it again, so appending is
/// a bounds check and a copy (a vector's insert or resize per field was
/// most of a small frame's encoding cost: callgrind, 64 B shm stream).
class ByteWriter {
 public:
  ByteWriter() = default;

  /// Adopts `buffer`'s storage (contents are discarded, capacity kept).
  explicit ByteWriter(std::vector<std::byte>&& buffer) : buffer_(std::move(buffer)) {
    buffer_.resize(buffer_.capacity());
  }

  /// Appends `size` bytes from `data`.
  void put(const void* data, std::size_t size) {
    if (size != 0) std::memcpy(extend(size), data, size);  // memcpy(_, nullptr, 0) is UB
  }
  void put(std::span<const std::byte> bytes) { put(bytes.data(), bytes.size()); }

  void put_u8(std::uint8_t value) { *extend(1) = static_cast<std::byte>(value); }
  void put_u16(std::uint16_t value) { put_le(value); }
  void put_u32(std::uint32_t value) { put_le(value); }
  void put_u64(std::uint64_t value) { put_le(value); }

  /// Appends `size` zero bytes and returns their offset, for a header whose
  /// fields (say a length) are known only after the body is written.
  std::size_t skip(std::size_t size) {
    const std::size_t offset = size_;
    if (size != 0) std::memset(extend(size), 0, size);
    return offset;
  }

  /// Appends `size` bytes of unspecified value and returns where they start,
  /// for a caller that overwrites them all at once (a frame built in place).
  /// The pointer is valid until the next call that appends.
  std::byte* extend(std::size_t size) {
    if (buffer_.size() - size_ < size) [[unlikely]]
      grow(size);
    std::byte* at = buffer_.data() + size_;
    size_ += size;
    return at;
  }

  /// Overwrites bytes already written. Throws std::out_of_range if
  /// [offset, offset + size) is not inside the buffer.
  void patch(std::size_t offset, const void* data, std::size_t size) {
    if (offset > size_ || size > size_ - offset)
      throw std::out_of_range("csp::ByteWriter::patch outside the written bytes");
    std::memcpy(buffer_.data() + offset, data, size);
  }

  void reserve(std::size_t capacity) {
    if (capacity > buffer_.size()) buffer_.resize(capacity);
  }
  /// Forgets the contents, keeps the storage.
  void clear() noexcept { size_ = 0; }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] const std::byte* data() const noexcept { return buffer_.data(); }
  [[nodiscard]] std::byte* data() noexcept { return buffer_.data(); }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {buffer_.data(), size_}; }

  /// Hands the written bytes over, leaving the writer empty.
  [[nodiscard]] std::vector<std::byte> release() noexcept {
    buffer_.resize(size_);  // shrinks: no allocation
    size_ = 0;
    return std::exchange(buffer_, {});
  }

 private:
  template <class U>
  void put_le(U value) {
    std::byte* at = extend(sizeof(U));
    for (std::size_t i = 0; i < sizeof(U); ++i) at[i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
  }

  /// Makes room for `more` bytes past size_: at least doubles the storage.
  __attribute__((noinline)) void grow(std::size_t more) {
    if (more > buffer_.max_size() - size_) throw std::length_error("csp::ByteWriter: too many bytes");
    buffer_.resize(std::max({size_ + more, 2 * buffer_.size(), std::size_t{64}}));
  }

  std::vector<std::byte> buffer_;  // storage: the first size_ bytes are written, the rest spare
  std::size_t size_ = 0;           // bytes written
};

/// Bounded view over encoded bytes. Every read is checked against the end
/// and throws csp::TransportError instead of reading past it.
class ByteReader {
 public:
  constexpr ByteReader() noexcept = default;
  ByteReader(const void* data, std::size_t size) noexcept
      : data_(static_cast<const std::byte*>(data)), size_(size) {}
  explicit ByteReader(std::span<const std::byte> bytes) noexcept
      : data_(bytes.data()), size_(bytes.size()) {}

  [[nodiscard]] std::size_t remaining() const noexcept { return size_ - position_; }
  [[nodiscard]] bool empty() const noexcept { return position_ == size_; }
  /// Bytes consumed so far, for error messages.
  [[nodiscard]] std::size_t position() const noexcept { return position_; }

  /// Copies the next `size` bytes into `out`.
  void get(void* out, std::size_t size) {
    const auto bytes = take(size);
    if (size != 0) std::memcpy(out, bytes.data(), size);  // memcpy(nullptr, _, 0) is UB
  }

  /// Returns a view of the next `size` bytes and consumes them.
  std::span<const std::byte> take(std::size_t size) {
    require(size);
    std::span<const std::byte> view{data_ + position_, size};
    position_ += size;
    return view;
  }

  void skip(std::size_t size) { (void)take(size); }

  std::uint8_t get_u8() { return std::to_integer<std::uint8_t>(take(1)[0]); }
  std::uint16_t get_u16() { return get_le<std::uint16_t>(); }
  std::uint32_t get_u32() { return get_le<std::uint32_t>(); }
  std::uint64_t get_u64() { return get_le<std::uint64_t>(); }

  /// Throws if `size` bytes are not available; names the shortfall.
  void require(std::size_t size) const {
    if (size > remaining())
      throw TransportError("csp: truncated input: need " + std::to_string(size) +
                           " byte(s) at offset " + std::to_string(position_) + " but only " +
                           std::to_string(remaining()) + " remain");
  }

  /// Throws if any bytes are left: a value must use its whole payload.
  void expect_end(std::string_view what) const {
    if (!empty())
      throw TransportError("csp: " + std::to_string(remaining()) + " trailing byte(s) after " +
                           std::string(what));
  }

 private:
  template <class U>
  U get_le() {
    const auto bytes = take(sizeof(U));
    U value;
    std::memcpy(&value, bytes.data(), sizeof(U));  // one load (a byte loop is not always merged)
    if constexpr (std::endian::native == std::endian::big) value = byteswap(value);
    return value;
  }
  template <class U>
  static U byteswap(U value) noexcept {
    U out = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) out = static_cast<U>((out << 8) | ((value >> (8 * i)) & 0xff));
    return out;
  }

  const std::byte* data_ = nullptr;  // start of the encoded bytes (not owned)
  std::size_t size_ = 0;             // number of bytes in view
  std::size_t position_ = 0;         // next byte to read; never exceeds size_
};

/// The customisation point; see the file comment. The second parameter lets
/// a specialisation be enabled by a condition (`std::enable_if_t<...>`).
template <class T, class = void>
struct codec;

/// A type whose values can cross a process boundary.
template <class T>
concept Codable = requires(ByteWriter& out, ByteReader& in, const T& value) {
  codec<T>::encode(out, value);
  { codec<T>::decode(in) } -> std::same_as<T>;
};

namespace detail {

// ---- structural type names -------------------------------------------------
// One recursive description feeds either a hasher (constexpr, for the
// fingerprint) or a string (for messages), so the two can never disagree.

/// FNV-1a, 64-bit: simple, constexpr and stable everywhere.
struct Fnv1a {
  std::uint64_t hash_ = 14695981039346656037ull;  // FNV offset basis
  constexpr void operator()(std::string_view text) noexcept {
    for (char c : text) {
      hash_ ^= static_cast<unsigned char>(c);
      hash_ *= 1099511628211ull;  // FNV prime
    }
  }
};

struct NameBuilder {
  std::string name_;  // description so far
  void operator()(std::string_view text) { name_ += text; }
};

template <class Sink>
constexpr void describe_number(Sink& sink, std::size_t number) {
  char digits[20] = {};
  std::size_t first = sizeof digits;
  do {
    digits[--first] = static_cast<char>('0' + number % 10);
    number /= 10;
  } while (number != 0);
  sink(std::string_view(digits + first, sizeof digits - first));
}

// A separate function whose signature spells only T, so the compiler's
// __PRETTY_FUNCTION__ has one easily found "T = <name>]".
template <class T>
constexpr const char* signature_naming() {
  return __PRETTY_FUNCTION__;
}

/// The compiler's spelling of T ("ns::Point"), constexpr on GCC and Clang.
template <class T>
constexpr std::string_view compiler_type_name() {
  const std::string_view signature = signature_naming<T>();
  const std::size_t start = signature.find("T = ");
  const std::size_t end = signature.rfind(']');
  if (start == std::string_view::npos || end == std::string_view::npos || end < start + 4)
    return signature;  // unknown compiler format: still deterministic
  return signature.substr(start + 4, end - start - 4);
}

// Raw bytes mean the receiving host must lay values out the same way.
inline constexpr std::string_view byte_order_suffix =
    std::endian::native == std::endian::little ? "" : "be";

template <class T, class Sink>
constexpr void describe(Sink& sink);

template <class T, class Sink>
constexpr void describe_default(Sink& sink) {
  sink(compiler_type_name<T>());
  sink("{s");
  describe_number(sink, sizeof(T));
  sink("a");
  describe_number(sink, alignof(T));
  sink(byte_order_suffix);
  sink("}");
}

/// Writes T's structural name: codec<T>::name if given, else the built-in
/// codec's own description, else the compiler's name with size and alignment.
template <class T, class Sink>
constexpr void describe(Sink& sink) {
  if constexpr (requires { std::string_view(codec<T>::name); })
    sink(std::string_view(codec<T>::name));
  else if constexpr (requires { codec<T>::describe(sink); })
    codec<T>::describe(sink);
  else
    describe_default<T>(sink);
}

template <class... Ts, class Sink>
constexpr void describe_list(Sink& sink) {
  [[maybe_unused]] bool first = true;
  ((sink(first ? "" : ","), first = false, describe<Ts>(sink)), ...);
}

template <class T>
inline constexpr std::uint64_t fingerprint_of = [] {
  Fnv1a hasher;
  describe<T>(hasher);
  return hasher.hash_;
}();

// ---- decoding limits ---------------------------------------------------------

/// The fewest bytes one encoded T can occupy: codec<T>::min_size if the codec
/// declares it, else 1. Used to cap element counts by the bytes remaining.
template <class T>
constexpr std::size_t min_encoded_size() {
  if constexpr (requires { std::size_t(codec<T>::min_size); })
    return codec<T>::min_size;
  else
    return 1;
}

// Elements that may encode to nothing (std::tuple<>, std::array<T, 0>) give
// no byte bound, so their count has a fixed cap instead.
inline constexpr std::uint32_t max_empty_element_count = 1u << 16;

/// Reads a u32 element count and rejects one the remaining bytes cannot hold.
template <class Element>
std::size_t read_count(ByteReader& in, std::string_view container) {
  const std::size_t at = in.position();
  const std::uint32_t count = in.get_u32();
  constexpr std::size_t element_size = min_encoded_size<Element>();
  const bool fits = element_size == 0 ? count <= max_empty_element_count
                                      : count <= in.remaining() / element_size;
  if (!fits)
    throw TransportError("csp: malformed input: " + std::string(container) + " at offset " +
                         std::to_string(at) + " claims " + std::to_string(count) +
                         " element(s) but only " + std::to_string(in.remaining()) +
                         " byte(s) remain");
  return count;
}

inline void write_count(ByteWriter& out, std::size_t count) {
  if (count > std::numeric_limits<std::uint32_t>::max())
    throw TransportError("csp: cannot encode a container of " + std::to_string(count) +
                         " elements (limit 2^32-1)");
  out.put_u32(static_cast<std::uint32_t>(count));
}

// ---- which types travel as raw bytes ----------------------------------------

template <class T>
struct is_structured_std : std::false_type {};
template <class T, std::size_t N>
struct is_structured_std<std::array<T, N>> : std::true_type {};
template <class A, class B>
struct is_structured_std<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct is_structured_std<std::tuple<Ts...>> : std::true_type {};
template <class T>
struct is_structured_std<std::optional<T>> : std::true_type {};
template <class... Ts>
struct is_structured_std<std::variant<Ts...>> : std::true_type {};

// Trivially copyable, but its bytes point into this process's memory.
template <class T>
struct is_address_holder
    : std::bool_constant<std::is_pointer_v<T> || std::is_member_pointer_v<T>> {};
template <class C, class Tr>
struct is_address_holder<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t N>
struct is_address_holder<std::span<T, N>> : std::true_type {};
template <class T>
struct is_address_holder<std::reference_wrapper<T>> : std::true_type {};

/// Types the raw-byte codec handles. Standard templates with a structural
/// codec are excluded even when trivially copyable, so they get a readable
/// name and element-wise validation (an optional's flag, a variant's index).
template <class T>
concept raw_codable = std::is_trivially_copyable_v<T> && !std::is_same_v<T, bool> &&
                      !std::is_const_v<T> && !std::is_volatile_v<T> && !std::is_array_v<T> &&
                      !is_structured_std<T>::value && !is_address_holder<T>::value;

/// True when T's codec copies its object bytes, so runs of T can be copied
/// with one memcpy.
template <class T>
concept raw_bytes_codec = requires { requires codec<T>::raw_bytes; };

template <class T, class Sink>
constexpr void describe_arithmetic(Sink& sink) {
  if constexpr (std::is_same_v<T, char>)
    sink("char");
  else if constexpr (std::is_same_v<T, wchar_t>)
    sink("wchar");
  else if constexpr (std::is_same_v<T, char8_t>)
    sink("char8");
  else if constexpr (std::is_same_v<T, char16_t>)
    sink("char16");
  else if constexpr (std::is_same_v<T, char32_t>)
    sink("char32");
  else if constexpr (std::is_integral_v<T>)
    sink(std::is_signed_v<T> ? "i" : "u"), describe_number(sink, 8 * sizeof(T));
  else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    sink("f"), describe_number(sink, 8 * sizeof(T));
  else  // long double and extended types: precision tells x87 from quad
    sink("float"), describe_number(sink, std::numeric_limits<T>::digits), sink("s"),
        describe_number(sink, sizeof(T));
  if constexpr (sizeof(T) > 1) sink(byte_order_suffix);
}

}  // namespace detail

// ---- built-in codecs -----------------------------------------------------------

/// Trivially copyable types: their object bytes, as laid out on this host.
template <class T>
  requires detail::raw_codable<T>
struct codec<T> {
  static constexpr bool raw_bytes = true;
  static constexpr std::size_t min_size = sizeof(T);

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    if constexpr (std::is_arithmetic_v<T>)
      detail::describe_arithmetic<T>(sink);
    else
      detail::describe_default<T>(sink);
  }

  static void encode(ByteWriter& out, const T& value) { out.put(&value, sizeof(T)); }

  static T decode(ByteReader& in) {
    // bit_cast rather than memcpy into a T: T need not be default-constructible.
    std::array<std::byte, sizeof(T)> bytes;
    in.get(bytes.data(), bytes.size());
    return std::bit_cast<T>(bytes);
  }
};

/// bool: one byte, 0 or 1; any other byte is rejected (it would be UB as a bool).
template <>
struct codec<bool> {
  static constexpr std::size_t min_size = 1;
  static constexpr std::string_view name = "bool";

  static void encode(ByteWriter& out, bool value) { out.put_u8(value ? 1 : 0); }
  static bool decode(ByteReader& in) {
    const std::size_t at = in.position();
    const std::uint8_t byte = in.get_u8();
    if (byte > 1)
      throw TransportError("csp: malformed input: bool at offset " + std::to_string(at) +
                           " has byte value " + std::to_string(byte));
    return byte == 1;
  }
};

/// std::string: u32 length, then the characters.
template <>
struct codec<std::string> {
  static constexpr std::size_t min_size = 4;
  static constexpr std::string_view name = "string";

  static void encode(ByteWriter& out, const std::string& value) {
    detail::write_count(out, value.size());
    out.put(value.data(), value.size());
  }
  static std::string decode(ByteReader& in) {
    const std::size_t length = detail::read_count<char>(in, "string");
    const auto bytes = in.take(length);
    return std::string(reinterpret_cast<const char*>(bytes.data()), length);
  }
};

/// std::vector: u32 count, then the elements (one memcpy for raw elements).
template <class T, class Allocator>
  requires Codable<T>
struct codec<std::vector<T, Allocator>> {
  using Vector = std::vector<T, Allocator>;
  static constexpr std::size_t min_size = 4;
  // vector<bool> is packed, so it never takes the memcpy path.
  static constexpr bool bulk =
      detail::raw_bytes_codec<T> && std::is_default_constructible_v<T> && !std::is_same_v<T, bool>;

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("vector<"), detail::describe<T>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const Vector& value) {
    detail::write_count(out, value.size());
    if constexpr (bulk) {
      out.put(value.data(), value.size() * sizeof(T));
    } else {
      for (const auto& element : value) codec<T>::encode(out, element);
    }
  }

  static Vector decode(ByteReader& in) {
    const std::size_t count = detail::read_count<T>(in, "vector");
    Vector result;
    if constexpr (std::is_same_v<T, char> || std::is_same_v<T, unsigned char> || std::is_same_v<T, std::byte>) {
      // Bytes may be read as T: built straight from them (no zero fill first).
      const auto bytes = in.take(count);
      const T* first = reinterpret_cast<const T*>(bytes.data());
      result.assign(first, first + count);
    } else if constexpr (bulk) {
      result.resize(count);
      in.get(result.data(), count * sizeof(T));
    } else {
      // The count is already capped by the remaining bytes, so reserving it is safe.
      result.reserve(count);
      for (std::size_t i = 0; i < count; ++i) result.push_back(codec<T>::decode(in));
    }
    return result;
  }
};

/// std::array: the N elements, no count.
template <class T, std::size_t N>
  requires Codable<T>
struct codec<std::array<T, N>> {
  static constexpr std::size_t min_size = N * detail::min_encoded_size<T>();
  static constexpr bool bulk = detail::raw_bytes_codec<T>;

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("array<"), detail::describe<T>(sink), sink(","), detail::describe_number(sink, N),
        sink(">");
  }

  static void encode(ByteWriter& out, const std::array<T, N>& value) {
    if constexpr (bulk) {
      out.put(value.data(), N * sizeof(T));
    } else {
      for (const auto& element : value) codec<T>::encode(out, element);
    }
  }

  static std::array<T, N> decode(ByteReader& in) {
    if constexpr (bulk && std::is_default_constructible_v<T>) {
      std::array<T, N> result;
      in.get(result.data(), N * sizeof(T));
      return result;
    } else if constexpr (std::is_default_constructible_v<T> && std::is_move_assignable_v<T>) {
      std::array<T, N> result;
      for (auto& element : result) element = codec<T>::decode(in);
      return result;
    } else {
      // Braced initialisation evaluates left to right, so elements decode in order.
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<T, N>{{((void)I, codec<T>::decode(in))...}};
      }(std::make_index_sequence<N>{});
    }
  }
};

/// std::pair: first, then second.
template <class A, class B>
  requires Codable<A> && Codable<B>
struct codec<std::pair<A, B>> {
  static constexpr std::size_t min_size =
      detail::min_encoded_size<A>() + detail::min_encoded_size<B>();

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("pair<"), detail::describe_list<A, B>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const std::pair<A, B>& value) {
    codec<A>::encode(out, value.first);
    codec<B>::encode(out, value.second);
  }
  static std::pair<A, B> decode(ByteReader& in) {
    // Braced initialisation evaluates left to right.
    return std::pair<A, B>{codec<A>::decode(in), codec<B>::decode(in)};
  }
};

/// std::tuple: the elements in order.
template <class... Ts>
  requires(Codable<Ts> && ...)
struct codec<std::tuple<Ts...>> {
  static constexpr std::size_t min_size = (std::size_t{0} + ... + detail::min_encoded_size<Ts>());

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("tuple<"), detail::describe_list<Ts...>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const std::tuple<Ts...>& value) {
    std::apply([&](const Ts&... elements) { (codec<Ts>::encode(out, elements), ...); }, value);
  }
  static std::tuple<Ts...> decode([[maybe_unused]] ByteReader& in) {
    // Braced initialisation evaluates left to right.
    return std::tuple<Ts...>{codec<Ts>::decode(in)...};
  }
};

/// std::optional: a u8 flag (0 empty, 1 engaged), then the value if engaged.
template <class T>
  requires Codable<T>
struct codec<std::optional<T>> {
  static constexpr std::size_t min_size = 1;

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("optional<"), detail::describe<T>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const std::optional<T>& value) {
    out.put_u8(value.has_value() ? 1 : 0);
    if (value) codec<T>::encode(out, *value);
  }
  static std::optional<T> decode(ByteReader& in) {
    const std::size_t at = in.position();
    switch (in.get_u8()) {
      case 0:
        return std::nullopt;
      case 1:
        return std::optional<T>(codec<T>::decode(in));
      default:
        throw TransportError("csp: malformed input: optional flag at offset " +
                             std::to_string(at) + " is neither 0 nor 1");
    }
  }
};

/// std::map: u32 count, then key/value pairs. Duplicate keys are rejected:
/// accepting them would silently drop values.
template <class K, class V, class Compare, class Allocator>
  requires Codable<K> && Codable<V>
struct codec<std::map<K, V, Compare, Allocator>> {
  using Map = std::map<K, V, Compare, Allocator>;
  static constexpr std::size_t min_size = 4;

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("map<"), detail::describe_list<K, V>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const Map& value) {
    detail::write_count(out, value.size());
    for (const auto& [key, mapped] : value) {
      codec<K>::encode(out, key);
      codec<V>::encode(out, mapped);
    }
  }

  static Map decode(ByteReader& in) {
    const std::size_t count = detail::read_count<std::pair<K, V>>(in, "map");
    Map result;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t at = in.position();
      K key = codec<K>::decode(in);
      V mapped = codec<V>::decode(in);
      // Keys arrive in order from our encoder, so hinting at the end is O(1).
      const std::size_t before = result.size();
      result.emplace_hint(result.end(), std::move(key), std::move(mapped));
      if (result.size() == before)
        throw TransportError("csp: malformed input: duplicate map key at offset " +
                             std::to_string(at));
    }
    return result;
  }
};

/// std::variant: u32 alternative index, then that alternative.
template <class... Ts>
  requires(Codable<Ts> && ...)
struct codec<std::variant<Ts...>> {
  using Variant = std::variant<Ts...>;
  static constexpr std::size_t min_size = 4;

  template <class Sink>
  static constexpr void describe(Sink& sink) {
    sink("variant<"), detail::describe_list<Ts...>(sink), sink(">");
  }

  static void encode(ByteWriter& out, const Variant& value) {
    if (value.valueless_by_exception())
      throw TransportError("csp: cannot encode a valueless variant");
    out.put_u32(static_cast<std::uint32_t>(value.index()));
    std::visit(
        [&](const auto& alternative) {
          codec<std::decay_t<decltype(alternative)>>::encode(out, alternative);
        },
        value);
  }

  static Variant decode(ByteReader& in) {
    const std::size_t at = in.position();
    const std::uint32_t index = in.get_u32();
    if (index >= sizeof...(Ts))
      throw TransportError("csp: malformed input: variant index " + std::to_string(index) +
                           " at offset " + std::to_string(at) + " is out of range (" +
                           std::to_string(sizeof...(Ts)) + " alternatives)");
    return decoders[index](in);
  }

 private:
  template <std::size_t I>
  static Variant decode_alternative(ByteReader& in) {
    using Alternative = std::variant_alternative_t<I, Variant>;
    // in_place_index keeps duplicate alternatives (variant<int, int>) apart.
    return Variant(std::in_place_index<I>, codec<Alternative>::decode(in));
  }

  static constexpr auto decoders = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<Variant (*)(ByteReader&), sizeof...(Ts)>{&decode_alternative<I>...};
  }(std::index_sequence_for<Ts...>{});
};

// ---- entry points ------------------------------------------------------------

/// Readable structural name of T for messages: "vector<i32>", "map<string,f64>",
/// "ns::Point{s8a4}".
template <class T>
std::string type_name() {
  detail::NameBuilder builder;
  detail::describe<T>(builder);
  return std::move(builder.name_);
}

/// Stable 64-bit hash of T's structure (FNV-1a of type_name<T>()); equal on
/// both ends of a connection exactly when they agree on the wire format.
template <class T>
constexpr std::uint64_t type_fingerprint() noexcept {
  return detail::fingerprint_of<T>;
}

/// Appends the encoding of `value` to `out`.
template <Codable T>
void encode(ByteWriter& out, const T& value) {
  codec<T>::encode(out, value);
}

/// Decodes one T from the front of `in`, leaving the rest. Throws
/// csp::TransportError on truncated or malformed input.
template <Codable T>
T decode(ByteReader& in) {
  return codec<T>::decode(in);
}

/// Decodes a T that must occupy all of `bytes` (a frame's payload). Throws
/// csp::TransportError naming T on truncated, malformed or trailing input.
template <Codable T>
T decode_all(std::span<const std::byte> bytes) {
  ByteReader in(bytes);
  try {
    T value = codec<T>::decode(in);
    in.expect_end("a complete value");
    return value;
  } catch (const TransportError& error) {
    throw TransportError(std::string(error.what()) + " (decoding " + type_name<T>() + ")");
  }
}

}  // namespace csp
