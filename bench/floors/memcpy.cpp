// memcpy.cpp: single-thread copy bandwidth, the floor of moving a message's
// bytes once.
//
// Page-offset trap: on the AMD Zen 3 of the reference VM, glibc 2.36 copies
// mid-sized blocks with `rep movsb`, which runs ~20x slower when the
// destination sits a few bytes past the source modulo 4 KiB (two malloc'd
// 64 KiB buffers land exactly there: dst = src + 64 KiB + 16). Both buffers
// here are page-aligned, so source and destination share their page offset.
#include "detail.hpp"

namespace cspbench::floors {

double memcpy_copy(std::size_t size, std::uint64_t n) {
  detail::check_size(size);
  detail::PageBuf src(size), dst(size);
  for (std::size_t i = 0; i < size; ++i) src.data()[i] = static_cast<unsigned char>(i * 131 + 7);
  std::memcpy(dst.data(), src.data(), size);  // touch and warm both buffers
  const bool pow2 = (size & (size - 1)) == 0;
  const double t0 = detail::now_s();
  for (std::uint64_t i = 0; i < n; ++i) {
    // Every copy carries different data, so no copy can be skipped.
    const std::size_t at = pow2 ? (i * 4099) & (size - 1) : (i * 4099) % size;
    src.data()[at] ^= 1;
    std::memcpy(dst.data(), src.data(), size);
    detail::keep(dst.data()[0]);
  }
  const double t1 = detail::now_s();
  FLOOR_CHECK(std::memcmp(dst.data(), src.data(), size) == 0);
  return t1 - t0;
}

}  // namespace cspbench::floors
