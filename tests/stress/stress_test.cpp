// Multi-threaded stress: sizes from 1 B to 64 MiB (mostly small, some medium, rare huge),
// random lifetimes, blocks handed between threads, realloc chains, aligned allocations; every
// block (including the slack up to its usable size) carries a pattern derived from its address,
// checked before it is freed or moved.
//
// Short by default (CI). Long runs: `stress_test --seconds=3600` or `--iters=N` (per thread),
// `--threads=N`; the same through STRESS_SECONDS / _ITERS / _THREADS.
// Faces: the mpcalloc_* entry points always (the only ones in sanitizer builds, where ASan/TSan
// own malloc); with the override library also plain malloc/free and C++ new/delete.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "mpcalloc/mpcalloc.h"
#include "support/rng.h"

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr long kDefaultIters = 25000;
#elif MPCALLOC_TEST_EMULATED  // under qemu-user: each iteration costs ~20 times as much
constexpr long kDefaultIters = 10000;
#else
constexpr long kDefaultIters = 100000;
#endif

struct Config {
  long iters = kDefaultIters;  // per thread
  long seconds = 0;            // > 0: run for this long instead of a number of iterations
  int threads = 8;
};
Config g_config;

constexpr size_t kSlots = 1024;      // hand-off slots shared by all threads
constexpr size_t kMaxLive = 1500;    // per thread
constexpr int kMaxLiveBig = 3;       // blocks > 1 MiB held per thread (bounds the RSS)
constexpr size_t kBig = size_t{1} << 20;

using mpcalloc::test::Rng;

// Mostly small, some medium 1K-1M, rare huge: the shape of real programs. Within a band the
// size is log-uniform, so every size class gets traffic.
size_t log_uniform(Rng& r, size_t lo, size_t hi) {
  int lo_bits = 63 - __builtin_clzll(lo);
  int hi_bits = 63 - __builtin_clzll(hi);
  int b = lo_bits + static_cast<int>(r.below(static_cast<uint64_t>(hi_bits - lo_bits + 1)));
  size_t base = size_t{1} << b;
  size_t n = base + r.below(base);
  return n < lo ? lo : n > hi ? hi : n;
}
size_t pick_size(Rng& r, bool allow_big) {
  uint64_t k = r.below(10000);
  if (k < 8000) return log_uniform(r, 1, 1024);
  if (k < 9850 || !allow_big) return log_uniform(r, 1025, kBig);
  if (k < 9980) return log_uniform(r, kBig + 1, size_t{8} << 20);
  return log_uniform(r, (size_t{8} << 20) + 1, size_t{64} << 20);
}

// ---- the pattern -------------------------------------------------------------------------
inline unsigned char pat(uintptr_t base, size_t i) {
  uint64_t h = (base >> 4) * 0x9E3779B97F4A7C15ull;
  return static_cast<unsigned char>((h >> 56) + i * 131 + (i >> 9));
}
// Every byte of blocks up to 64 KiB; for bigger ones the first 4 KiB, one byte per 16 KiB
// (a few per page would fault every page in: RSS), and the last 512 bytes.
template <typename Fn>
void for_each_offset(size_t n, Fn fn) {
  if (n <= 65536) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  for (size_t i = 0; i < 4096; ++i) fn(i);
  for (size_t i = 4096; i < n - 512; i += 16381) fn(i);
  for (size_t i = n - 512; i < n; ++i) fn(i);
}

enum Kind : uint8_t { kMalloc, kCalloc, kPosixMemalign, kAlignedAlloc, kMemalign, kNew, kNewAligned };

struct Block {
  unsigned char* p = nullptr;
  size_t n = 0;       // requested
  size_t extent = 0;  // usable size: stamped and checked too
  size_t align = 16;
  Kind kind = kMalloc;
};

struct Shared {
  std::mutex locks[kSlots];
  Block slots[kSlots];
  std::atomic<long> errors{0};
  std::atomic<long> ops{0};
  std::atomic<bool> stop{false};
};

void report(Shared& sh, const char* what, const Block& b) {
  if (sh.errors.fetch_add(1) < 20) {
    std::fprintf(stderr, "stress: %s: block %p size %zu extent %zu align %zu kind %d\n", what,
                 static_cast<void*>(b.p), b.n, b.extent, b.align, static_cast<int>(b.kind));
  }
}

// ---- faces -------------------------------------------------------------------------------
struct PrefixedFace {
  static constexpr bool kCxx = false;
  static void* malloc(size_t n) { return mpcalloc_malloc(n); }
  static void* calloc(size_t a, size_t b) { return mpcalloc_calloc(a, b); }
  static void* realloc(void* p, size_t n) { return mpcalloc_realloc(p, n); }
  static void free(void* p) { mpcalloc_free(p); }
  static int posix_memalign(void** o, size_t a, size_t n) { return mpcalloc_posix_memalign(o, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return mpcalloc_aligned_alloc(a, n); }
  static void* memalign(size_t a, size_t n) { return mpcalloc_memalign(a, n); }
  static size_t usable(void* p) { return mpcalloc_malloc_usable_size(p); }
  static void trim() { mpcalloc_malloc_trim(0); }
  static void* cxx_new(size_t, size_t) { return nullptr; }
  static void cxx_delete(void*, size_t, size_t) {}
};

#if STRESS_PLAIN
struct PlainFace {
  static constexpr bool kCxx = true;
  static void* malloc(size_t n) { return ::malloc(n); }
  static void* calloc(size_t a, size_t b) { return ::calloc(a, b); }
  static void* realloc(void* p, size_t n) { return ::realloc(p, n); }
  static void free(void* p) { ::free(p); }
  static int posix_memalign(void** o, size_t a, size_t n) { return ::posix_memalign(o, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return ::aligned_alloc(a, n); }
  static void* memalign(size_t a, size_t n) { return ::memalign(a, n); }
  static size_t usable(void* p) { return ::malloc_usable_size(p); }
  static void trim() { ::malloc_trim(0); }
  static void* cxx_new(size_t n, size_t align) {
    if (align <= 16) return ::operator new(n);
    return ::operator new(n, std::align_val_t{align});
  }
  static void cxx_delete(void* p, size_t n, size_t align) {
#if defined(__cpp_sized_deallocation)
    if (align <= 16) {
      ::operator delete(p, n);
    } else {
      ::operator delete(p, n, std::align_val_t{align});
    }
#else
    (void)n;
    if (align <= 16) {
      ::operator delete(p);
    } else {
      ::operator delete(p, std::align_val_t{align});
    }
#endif
  }
};
#endif

template <typename F>
struct Worker {
  Shared& sh;
  Rng r;
  std::vector<Block> mine;
  int big_held = 0;

  Worker(Shared& s, uint64_t seed) : sh(s), r{seed} { mine.reserve(kMaxLive + 16); }

  void stamp(Block& b) {
    uintptr_t base = reinterpret_cast<uintptr_t>(b.p);
    for_each_offset(b.extent, [&](size_t i) { b.p[i] = pat(base, i); });
  }
  bool verify(const Block& b) {
    uintptr_t base = reinterpret_cast<uintptr_t>(b.p);
    bool ok = true;
    for_each_offset(b.extent, [&](size_t i) { ok = ok && b.p[i] == pat(base, i); });
    if (!ok) report(sh, "pattern damaged", b);
    return ok;
  }
  // Records the usable size and checks what every block must satisfy.
  bool admit(Block& b) {
    if (reinterpret_cast<uintptr_t>(b.p) % b.align != 0) {
      report(sh, "misaligned", b);
      return false;
    }
    b.extent = F::usable(b.p);
    if (b.extent < b.n) {
      report(sh, "usable size below the request", b);
      b.extent = b.n;
      return false;
    }
    return true;
  }

  void track_big(const Block& b, int delta) {
    if (b.n > kBig) big_held += delta;
  }

  bool allocate(Block& b) {
    b.n = pick_size(r, big_held < kMaxLiveBig);
    b.align = 16;
    uint64_t how = r.below(20);
    void* p = nullptr;
    if (how < 10) {
      b.kind = kMalloc;
      p = F::malloc(b.n);
    } else if (how < 12) {
      b.kind = kCalloc;
      size_t count = 1 + r.below(4);
      b.n = (b.n + count - 1) / count * count;
      p = F::calloc(count, b.n / count);
      if (p != nullptr) {  // zeroed (sampled like the pattern)
        auto* c = static_cast<unsigned char*>(p);
        bool zero = true;
        for_each_offset(b.n, [&](size_t i) { zero = zero && c[i] == 0; });
        if (!zero) report(sh, "calloc memory not zero", Block{c, b.n, b.n, 16, kCalloc});
      }
    } else if (how < 16) {
      b.align = size_t{32} << r.below(12);  // 32 B .. 64 KiB
      if (b.n > kBig && b.align < 4096) b.align = size_t{2} << 20;  // and huge aligned to 2 MiB
      uint64_t which = r.below(3);
      if (which == 0) {
        b.kind = kPosixMemalign;
        if (F::posix_memalign(&p, b.align, b.n) != 0) p = nullptr;
      } else if (which == 1) {
        b.kind = kAlignedAlloc;
        b.n = (b.n + b.align - 1) / b.align * b.align;  // C11: a multiple of the alignment
        p = F::aligned_alloc(b.align, b.n);
      } else {
        b.kind = kMemalign;
        p = F::memalign(b.align, b.n);
      }
    } else if (F::kCxx) {
      b.kind = how < 19 ? kNew : kNewAligned;
      if (b.kind == kNewAligned) b.align = size_t{32} << r.below(8);
      p = F::cxx_new(b.n, b.align);
    } else {
      b.kind = kMalloc;
      p = F::malloc(b.n);
    }
    b.p = static_cast<unsigned char*>(p);
    if (p == nullptr) {
      report(sh, "allocation failed", b);
      return false;
    }
    if (!admit(b)) return false;
    stamp(b);
    track_big(b, +1);
    return true;
  }

  void release(const Block& b) {
    verify(b);
    track_big(b, -1);
    if (b.kind == kNew || b.kind == kNewAligned) {
      F::cxx_delete(b.p, b.n, b.align);
    } else {
      F::free(b.p);
    }
  }

  // A chain of reallocs (grow, shrink, across classes); the kept prefix must survive each move.
  void realloc_chain(Block& b) {
    if (b.kind == kNew || b.kind == kNewAligned) return;
    verify(b);
    int steps = 1 + static_cast<int>(r.below(6));
    for (int s = 0; s < steps; ++s) {
      size_t n;
      uint64_t how = r.below(4);
      if (how == 0) {
        n = b.n + 1 + r.below(64);  // creep (in place most of the time)
      } else if (how == 1) {
        n = b.n * 2 + 1;
      } else if (how == 2) {
        n = b.n / 2 + 1;
      } else {
        n = pick_size(r, big_held < kMaxLiveBig);
      }
      if (n > (size_t{64} << 20)) n = size_t{64} << 20;
      uintptr_t old_base = reinterpret_cast<uintptr_t>(b.p);
      size_t keep = b.n < n ? b.n : n;
      size_t old_extent = b.extent;
      auto* q = static_cast<unsigned char*>(F::realloc(b.p, n));
      if (q == nullptr) {
        report(sh, "realloc failed", b);
        return;  // the old block is still ours
      }
      bool ok = true;
      // The offsets stamped into the old block, below what realloc keeps.
      for_each_offset(old_extent, [&](size_t i) { ok = ok && (i >= keep || q[i] == pat(old_base, i)); });
      track_big(b, -1);
      b.p = q;
      b.n = n;
      b.align = 16;  // realloc guarantees only malloc's alignment
      b.kind = kMalloc;
      if (!ok) report(sh, "realloc lost the kept prefix", b);
      admit(b);
      stamp(b);
      track_big(b, +1);
    }
  }

  void hand_off() {
    size_t k = r.below(mine.size());
    Block give = mine[k];
    mine[k] = mine.back();
    mine.pop_back();
    track_big(give, -1);
    size_t s = r.below(kSlots);
    Block got;
    {
      std::lock_guard<std::mutex> g(sh.locks[s]);
      got = sh.slots[s];
      sh.slots[s] = give;
    }
    if (got.p == nullptr) return;
    if (r.below(2) == 0 && mine.size() < kMaxLive) {
      verify(got);
      track_big(got, +1);
      mine.push_back(got);  // adopted: freed later by this thread (remote to its owner)
    } else {
      track_big(got, +1);
      release(got);
    }
  }

  void drop_random() {
    size_t k = r.below(mine.size());
    Block b = mine[k];
    mine[k] = mine.back();
    mine.pop_back();
    release(b);
  }

  void run(long iters) {
    for (long it = 0; g_config.seconds > 0 ? !sh.stop.load(std::memory_order_relaxed) : it < iters;
         ++it) {
      uint64_t op = r.below(100);
      if (op < 45 || mine.empty()) {
        Block b;
        if (allocate(b)) {
          mine.push_back(b);
        } else if (b.p != nullptr) {
          mine.push_back(b);  // misaligned or short but allocated: still ours to free
        }
      } else if (op < 75) {
        drop_random();
      } else if (op < 83) {
        realloc_chain(mine[r.below(mine.size())]);
      } else if (op < 97) {
        hand_off();
      } else {  // a burst: many short-lived small blocks freed in reverse (LIFO lifetimes)
        Block burst[64];
        int got = 0;
        for (int i = 0; i < 64; ++i) {
          burst[i].n = 1 + r.below(512);
          burst[i].p = static_cast<unsigned char*>(F::malloc(burst[i].n));
          if (burst[i].p == nullptr) {
            report(sh, "allocation failed", burst[i]);
            break;
          }
          admit(burst[i]);
          stamp(burst[i]);
          ++got;
        }
        for (int i = got - 1; i >= 0; --i) release(burst[i]);
      }
      if (r.below(5000) == 0) {  // now and then: trim / collect / stats racing the others
        uint64_t k = r.below(3);
        if (k == 0) {
          F::trim();
        } else if (k == 1) {
          mpcalloc_collect(0);
        } else {
          mpcalloc_stats_t st;
          mpcalloc_stats_get(&st);
          if (st.mapped_bytes < st.huge_bytes) report(sh, "stats: mapped below huge bytes", Block{});
        }
      }
      while (mine.size() > kMaxLive) drop_random();
      if ((it & 1023) == 0) sh.ops.fetch_add(1024, std::memory_order_relaxed);
    }
    while (!mine.empty()) drop_random();
  }
};

template <typename F>
void run_stress(uint64_t seed) {
  static Shared sh;  // big (slots): not on the stack
  sh.errors = 0;
  sh.ops = 0;
  sh.stop = false;
  for (auto& s : sh.slots) s = Block{};
  mpcalloc_stats_t before;
  mpcalloc_stats_get(&before);
  std::vector<std::thread> ts;
  for (int t = 0; t < g_config.threads; ++t) {
    ts.emplace_back([t, seed] {
      Worker<F> w(sh, seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t) * 7919 + 1);
      w.run(g_config.iters);
    });
  }
  if (g_config.seconds > 0) {
    auto start = std::chrono::steady_clock::now();
    long next_report = 60;
    while (true) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      long el = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::steady_clock::now() - start)
                                      .count());
      if (el >= next_report) {
        mpcalloc_stats_t st;
        mpcalloc_stats_get(&st);
        std::fprintf(stderr, "stress: %lds, ~%ld ops, errors %ld, mapped %zu MiB, peak %zu MiB\n",
                     el, sh.ops.load(), sh.errors.load(), st.mapped_bytes >> 20,
                     st.peak_mapped_bytes >> 20);
        next_report += 60;
      }
      if (el >= g_config.seconds || sh.errors.load() > 0) break;
    }
    sh.stop = true;
  }
  for (auto& t : ts) t.join();
  // What is left in the hand-off slots is freed by the main thread (remote frees again).
  Worker<F> last(sh, seed + 99);
  for (size_t s = 0; s < kSlots; ++s) {
    if (sh.slots[s].p != nullptr) last.release(sh.slots[s]);
    sh.slots[s] = Block{};
  }
  std::fprintf(stderr, "stress: %d threads, ~%ld ops\n", g_config.threads, sh.ops.load());
  EXPECT_EQ(sh.errors.load(), 0);

  mpcalloc_stats_t after;
  mpcalloc_stats_get(&after);
  // Blocks really travelled between threads (the test exercises remote frees).
  EXPECT_GT(after.remote_frees, before.remote_frees);
  // Everything was freed: no huge block is still in use, and a trim empties the cache.
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_get(&after);
  EXPECT_EQ(after.huge_count, 0u);
  EXPECT_EQ(after.cached_bytes, 0u);
  // And the allocator is still healthy: a new round of blocks of every kind is good.
  Worker<F> again(sh, seed + 7);
  for (int i = 0; i < 300; ++i) {
    Block b;
    if (again.allocate(b)) again.release(b);
  }
  EXPECT_EQ(sh.errors.load(), 0);
}

long env_long(const char* name, long dflt) {
  const char* e = std::getenv(name);
  return e != nullptr ? std::atol(e) : dflt;
}

}  // namespace

TEST(Stress, PrefixedThreadsRandomSizesHandoffReallocAligned) { run_stress<PrefixedFace>(1); }

// Owners that allocate in bursts and then sleep (no allocator call) while other threads check
// and free their blocks: with a 2 ms decay time, the idle-heap collection runs on the sleeping
// owners' heaps (from the freeing threads' maintenance) while those owners wake up and take
// their slow paths again. Every block carries a pattern of its address and round; a block
// handed out twice, or written by the allocator while live, breaks it.
TEST(Stress, IdleOwnersCollectedWhileOtherThreadsFreeTheirBlocks) {
  long long old_decay = mpcalloc_option_get("decay_ms");
  ASSERT_EQ(mpcalloc_option_set("decay_ms", "2"), 0);
  constexpr int kOwners = 3, kFreers = 2, kRounds = 40, kBurst = 3000;
  struct Handoff {
    std::mutex lock;
    std::vector<std::vector<void*>> batches;  // taken by the freers
    int owners_left = kOwners;
  } box;
  std::atomic<long> bad{0}, freed{0};
  auto pattern = [](const void* p) { return static_cast<unsigned char>((reinterpret_cast<uintptr_t>(p) >> 4) * 31); };
  std::vector<std::thread> ts;
  for (int o = 0; o < kOwners; ++o) {
    ts.emplace_back([&, o] {
      Rng r{static_cast<uint64_t>(o) + 77};
      for (int round = 0; round < kRounds; ++round) {
        std::vector<void*> mine;
        mine.reserve(kBurst);
        for (int i = 0; i < kBurst; ++i) {
          size_t n = 16 + r.below(r.below(8) == 0 ? 4000 : 500);
          auto* p = static_cast<unsigned char*>(mpcalloc_malloc(n));
          if (p == nullptr) {
            bad.fetch_add(1);
            continue;
          }
          memset(p, pattern(p), n);
          memcpy(p, &n, sizeof n);  // the size first, for the checker
          mine.push_back(p);
        }
        {
          std::lock_guard<std::mutex> g(box.lock);
          box.batches.push_back(std::move(mine));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1 + r.below(6)));  // idle
      }
      std::lock_guard<std::mutex> g(box.lock);
      --box.owners_left;
    });
  }
  for (int f = 0; f < kFreers; ++f) {
    ts.emplace_back([&] {
      for (;;) {
        std::vector<void*> batch;
        bool done;
        {
          std::lock_guard<std::mutex> g(box.lock);
          done = box.owners_left == 0 && box.batches.empty();
          if (!box.batches.empty()) {
            batch = std::move(box.batches.back());
            box.batches.pop_back();
          }
        }
        if (done) return;
        if (batch.empty()) {
          std::this_thread::yield();
          continue;
        }
        for (void* v : batch) {
          auto* p = static_cast<unsigned char*>(v);
          size_t n;
          memcpy(&n, p, sizeof n);
          if (n < 16 || n > 16 + 4000) {
            bad.fetch_add(1);
            continue;
          }
          for (size_t i = sizeof n; i < n; ++i) {
            if (p[i] != pattern(p)) {
              bad.fetch_add(1);
              break;
            }
          }
          mpcalloc_free(p);
          freed.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  mpcalloc_option_set("decay_ms", std::to_string(old_decay).c_str());
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(freed.load(), long{kOwners} * kRounds * kBurst);
}

#if STRESS_PLAIN
// Plain malloc/free and C++ new/delete (sized and aligned) of the override library.
TEST(Stress, PlainMallocAndNewThreadsRandomSizesHandoffReallocAligned) { run_stress<PlainFace>(2); }
#endif

int main(int argc, char** argv) {
  g_config.iters = env_long("STRESS_ITERS", g_config.iters);
  g_config.seconds = env_long("STRESS_SECONDS", 0);
  g_config.threads = static_cast<int>(env_long("STRESS_THREADS", g_config.threads));
  testing::InitGoogleTest(&argc, argv);  // removes the --gtest_* arguments
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--iters=", 0) == 0) {
      g_config.iters = std::atol(a.c_str() + 8);
    } else if (a.rfind("--seconds=", 0) == 0) {
      g_config.seconds = std::atol(a.c_str() + 10);
    } else if (a.rfind("--threads=", 0) == 0) {
      g_config.threads = std::atoi(a.c_str() + 10);
    } else {
      std::fprintf(stderr, "usage: %s [--seconds=N | --iters=N] [--threads=N] [gtest options]\n",
                   argv[0]);
      return 2;
    }
  }
  if (g_config.threads < 1) g_config.threads = 1;
  return RUN_ALL_TESTS();
}
