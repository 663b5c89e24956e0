// xorshift64: the tests' deterministic sizes and choices (no allocator call, no global state).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::test {

struct Rng {
  uint64_t x;  // the state: never 0

  // A well-spread state from a small seed: seeds 0, 1, 2... give unrelated streams.
  static Rng seeded(uint64_t seed) { return Rng{seed * 0x9e3779b97f4a7c15ull + 1}; }

  uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

}  // namespace mpcalloc::test
