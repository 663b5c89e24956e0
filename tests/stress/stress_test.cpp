// Multi-threaded stress: random sizes from 1 B to 64 MiB, random lifetimes, blocks handed
// between threads, realloc chains, aligned allocations; every block carries a pattern derived
// from its address, checked before it is freed. MPCALLOC_STRESS_ITERS scales the run (the CI
// default is short; e.g. MPCALLOC_STRESS_ITERS=20000000 for a long run).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "mpcalloc/mpcalloc.h"

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr long kDefaultIters = 60000;
#else
constexpr long kDefaultIters = 400000;
#endif
constexpr int kThreads = 4;
constexpr size_t kSlots = 4096;

struct Rng {
  uint64_t x;
  uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
};

// Mostly small, some medium, rare huge: the shape of real programs.
size_t pick_size(Rng& r) {
  uint64_t k = r.next() % 1000;
  if (k < 700) return 16 + r.next() % 241;
  if (k < 900) return 257 + r.next() % 8000;
  if (k < 990) return 8193 + r.next() % (1 << 20);
  if (k < 998) return (size_t{1} << 20) + r.next() % (8 << 20);
  return (size_t{8} << 20) + r.next() % (56 << 20);
}

// A block starts with its size; the rest is a pattern from its address. Big blocks are
// patterned on a sparse set of offsets to keep the run fast.
inline unsigned char pat(uintptr_t base, size_t i) {
  return static_cast<unsigned char>((base >> 4) + i * 131 + (i >> 8));
}
template <typename Fn>
void for_each_offset(size_t n, Fn fn) {
  if (n <= 65536) {
    for (size_t i = 8; i < n; ++i) fn(i);
  } else {
    for (size_t i = 8; i < 4096; ++i) fn(i);
    for (size_t i = 4096; i < n; i += 4093) fn(i);
    for (size_t i = n - 512; i < n; ++i) fn(i);
  }
}
void stamp(void* p, size_t n) {
  std::memcpy(p, &n, 8);
  auto* c = static_cast<unsigned char*>(p);
  uintptr_t b = reinterpret_cast<uintptr_t>(p);
  for_each_offset(n, [&](size_t i) { c[i] = pat(b, i); });
}
bool verify(const void* p) {
  size_t n;
  std::memcpy(&n, p, 8);
  if (n < 16 || n > (size_t{64} << 20)) return false;
  const auto* c = static_cast<const unsigned char*>(p);
  uintptr_t b = reinterpret_cast<uintptr_t>(p);
  bool ok = true;
  for_each_offset(n, [&](size_t i) { ok = ok && c[i] == pat(b, i); });
  return ok;
}

struct Shared {
  std::atomic<void*> slots[kSlots];
  std::atomic<long> errors{0};
};

void* alloc_block(Rng& r, size_t n) {
  void* p;
  uint64_t how = r.next() % 10;
  if (how == 0) {
    size_t align = size_t{16} << (r.next() % 13);  // 16 B .. 64 KiB
    if (mpcalloc_posix_memalign(&p, align, n) != 0) return nullptr;
    if (reinterpret_cast<uintptr_t>(p) % align != 0) return nullptr;
  } else if (how == 1) {
    p = mpcalloc_calloc(1, n);
  } else {
    p = mpcalloc_malloc(n);
  }
  if (p != nullptr) stamp(p, n);
  return p;
}

void worker(Shared& sh, int id, long iters) {
  Rng r{0x9E3779B97F4A7C15ull * static_cast<uint64_t>(id + 1)};
  std::vector<void*> mine;
  for (long it = 0; it < iters; ++it) {
    uint64_t op = r.next() % 100;
    if (op < 45 || mine.empty()) {
      void* p = alloc_block(r, pick_size(r));
      if (p == nullptr) {
        ++sh.errors;
        continue;
      }
      mine.push_back(p);
    } else if (op < 75) {  // free one of mine, in random order
      size_t k = r.next() % mine.size();
      if (!verify(mine[k])) ++sh.errors;
      mpcalloc_free(mine[k]);
      mine[k] = mine.back();
      mine.pop_back();
    } else if (op < 85) {  // realloc chain step
      size_t k = r.next() % mine.size();
      void* old = mine[k];
      if (!verify(old)) ++sh.errors;
      size_t old_n;
      std::memcpy(&old_n, old, 8);
      size_t n = pick_size(r);
      void* q = mpcalloc_realloc(old, n);
      if (q == nullptr) {
        ++sh.errors;
        continue;
      }
      // The kept prefix must have survived the move: check it against the old address.
      const auto* c = static_cast<const unsigned char*>(q);
      uintptr_t ob = reinterpret_cast<uintptr_t>(old);
      size_t keep = old_n < n ? old_n : n;
      for (size_t i = 8; i < keep && i < 4096; ++i) {
        if (c[i] != pat(ob, i)) {
          ++sh.errors;
          break;
        }
      }
      stamp(q, n);
      mine[k] = q;
    } else {  // hand a block to whoever takes the slot (remote frees)
      size_t s = r.next() % kSlots;
      size_t k = r.next() % mine.size();
      void* give = mine[k];
      mine[k] = mine.back();
      mine.pop_back();
      void* got = sh.slots[s].exchange(give, std::memory_order_acq_rel);
      if (got != nullptr) {
        if (!verify(got)) ++sh.errors;
        if (r.next() % 2 == 0) {
          mine.push_back(got);
        } else {
          mpcalloc_free(got);
        }
      }
    }
    while (mine.size() > 2000) {  // bound the live set (lifetimes stay random)
      size_t k = r.next() % mine.size();
      if (!verify(mine[k])) ++sh.errors;
      mpcalloc_free(mine[k]);
      mine[k] = mine.back();
      mine.pop_back();
    }
  }
  for (void* p : mine) {
    if (!verify(p)) ++sh.errors;
    mpcalloc_free(p);
  }
}

long iterations() {
  const char* e = std::getenv("MPCALLOC_STRESS_ITERS");
  return e != nullptr ? std::atol(e) : kDefaultIters;
}

}  // namespace

TEST(Stress, ThreadsRandomSizesHandoffReallocAligned) {
  static Shared sh;
  for (auto& s : sh.slots) s.store(nullptr);
  long iters = iterations();
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) ts.emplace_back(worker, std::ref(sh), t, iters);
  for (auto& t : ts) t.join();
  for (auto& s : sh.slots) {
    void* p = s.exchange(nullptr);
    if (p != nullptr) {
      if (!verify(p)) ++sh.errors;
      mpcalloc_free(p);
    }
  }
  EXPECT_EQ(sh.errors.load(), 0);
  // Everything was freed: after a trim, little stays mapped.
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t st;
  mpcalloc_stats_get(&st);
  EXPECT_EQ(st.huge_count, 0u);
  EXPECT_EQ(st.cached_bytes, 0u);
}
