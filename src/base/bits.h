// Bit operations and alignment arithmetic. Layer base: pure, no policy.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::base {

constexpr bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
constexpr size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
constexpr uintptr_t align_down(uintptr_t x, size_t a) { return x & ~(uintptr_t{a} - 1); }
// floor(log2(x)) for x > 0.
constexpr unsigned log2_floor(size_t x) { return 63u - static_cast<unsigned>(__builtin_clzll(x)); }
constexpr size_t next_pow2(size_t x) { return x <= 1 ? 1 : size_t{1} << (log2_floor(x - 1) + 1); }
// Index of the lowest set bit, x != 0.
constexpr unsigned lowest_bit(uint64_t x) { return static_cast<unsigned>(__builtin_ctzll(x)); }
constexpr unsigned popcount(uint64_t x) { return static_cast<unsigned>(__builtin_popcountll(x)); }

}  // namespace mpcalloc::base
