// Small-object size classes as compile-time data. Layer base.
// 16-byte spacing up to 128 B (most common sizes, no waste), then 4 classes per power of two
// (at most 25% internal waste) up to kSmallMax. Every power of two is a class, so a block of a
// power-of-two class is aligned to its size inside a 64 KiB-aligned run (used by memalign).
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/bits.h"

namespace mpcalloc::base {

inline constexpr size_t kSmallMax = 8192;       // largest small-class size
inline constexpr size_t kDirectMax = 1024;      // sizes served by the inline fast path
inline constexpr unsigned kDirectSlots = kDirectMax / 16 + 1;
inline constexpr unsigned kSmallClasses = 8 + 4 * 6;  // 16..128 by 16, then 160..8192

// Class index of a request of `size` bytes (size <= kSmallMax).
constexpr unsigned small_class_of(size_t size) {
  if (size <= 128) return size == 0 ? 0 : static_cast<unsigned>((size + 15) >> 4) - 1;
  unsigned e = log2_floor(size - 1);  // size in (2^e, 2^(e+1)]
  unsigned sub = static_cast<unsigned>(((size - 1) >> (e - 2)) & 3);
  return 8 + (e - 7) * 4 + sub;
}

constexpr size_t small_class_size(unsigned cls) {
  if (cls < 8) return (cls + 1) * 16;
  unsigned e = 7 + (cls - 8) / 4;
  unsigned sub = (cls - 8) % 4;
  return (size_t{1} << e) + (sub + 1) * (size_t{1} << (e - 2));
}

static_assert(small_class_size(kSmallClasses - 1) == kSmallMax);
static_assert(small_class_of(kSmallMax) == kSmallClasses - 1);
static_assert(small_class_of(129) == 8 && small_class_size(8) == 160);
static_assert(small_class_of(256) == 11 && small_class_of(257) == 12);

}  // namespace mpcalloc::base
