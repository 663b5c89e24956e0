// Layer source: segments, huge blocks, the cache (budget, split/merge, trim), the registry.
// Tests share one process's source: they assert on deltas and trim first.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sys/mman.h>

#include "os/os_memory.h"
#include "source/block_source.h"
#include "source/place.h"

using namespace mpcalloc::source;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
void reset(size_t budget = 256 * kMiB) {
  configure({budget, 60000, 0});
  trim_cache();
}
}  // namespace

TEST(Source, SegmentIsAlignedRegisteredAndHeaded) {
  reset();
  int owner = 0;
  SegmentHeader* s = acquire_segment(SegmentKind::kSmall, &owner, 0);
  ASSERT_NE(s, nullptr);
  uintptr_t base = segment_base(s);
  EXPECT_EQ(base % kSegmentSize, 0u);
  EXPECT_EQ(s, segment_header(base));
  EXPECT_EQ(s->magic, kSegmentMagic);
  EXPECT_EQ(s->kind, SegmentKind::kSmall);
  EXPECT_EQ(s->owner, &owner);
  EXPECT_EQ(s->map_size, kSegmentSize);
  EXPECT_TRUE(is_registered(base));
  EXPECT_EQ(segment_base_of(reinterpret_cast<void*>(base + 12345)), base);
  // The run table is zero: no owner key matches.
  const auto* table = reinterpret_cast<const unsigned char*>(base);
  for (size_t i = 0; i < kRunTableBytes; ++i) ASSERT_EQ(table[i], 0);
  release_segment(s);
  trim_cache();
  EXPECT_FALSE(is_registered(base));
}

TEST(Source, ReleasedSegmentIsReusedFromCache) {
  reset();
  SegmentHeader* a = acquire_segment(SegmentKind::kMedium, nullptr, 0);
  ASSERT_NE(a, nullptr);
  std::memset(reinterpret_cast<void*>(segment_base(a)), 0xee, kRunTableBytes);
  SourceStats before = stats();
  release_segment(a);
  EXPECT_EQ(stats().cached_bytes, before.cached_bytes + kSegmentSize);
  SegmentHeader* b = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  EXPECT_EQ(b, a);  // same block, no new mapping
  EXPECT_EQ(stats().mapped_bytes, before.mapped_bytes);
  const auto* table = reinterpret_cast<const unsigned char*>(segment_base(b));
  for (size_t i = 0; i < kRunTableBytes; ++i) ASSERT_EQ(table[i], 0) << "run table not reset";
  release_segment(b);
  reset();
}

TEST(Source, ZeroBudgetReturnsEverythingAtOnce) {
  reset(0);
  SourceStats before = stats();
  SegmentHeader* a = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  SegmentHeader* h = acquire_huge(10 * kMiB, false, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(h, nullptr);
  release_segment(a);
  release_huge(h);
  SourceStats after = stats();
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
  reset();
}

TEST(Source, HugeBlockCountsAndZero) {
  reset();
  SourceStats before = stats();
  SegmentHeader* h = acquire_huge(6 * kMiB + 5, true, 0);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(segment_base(h) % kSegmentSize, 0u);
  EXPECT_GE(h->map_size, 6 * kMiB + 5);
  EXPECT_EQ(h->map_size % 4096, 0u);
  EXPECT_TRUE(h->is_zero);
  EXPECT_EQ(stats().huge_count, before.huge_count + 1);
  EXPECT_EQ(stats().huge_bytes, before.huge_bytes + h->map_size);
  release_huge(h);
  EXPECT_EQ(stats().huge_count, before.huge_count);
  reset();
}

TEST(Source, LargeCachedBlockIsSplitAndMergesBack) {
  reset();
  SegmentHeader* big = acquire_huge(40 * kMiB, false, 0);
  ASSERT_NE(big, nullptr);
  uintptr_t base = segment_base(big);
  size_t full = big->map_size;
  release_huge(big);
  SourceStats mid = stats();
  // A small request takes the front of the cached block without a new mapping.
  SegmentHeader* front = acquire_huge(5 * kMiB, false, 0);
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(segment_base(front), base);
  EXPECT_LT(front->map_size, full);
  EXPECT_EQ(stats().mapped_bytes, mid.mapped_bytes);
  EXPECT_GT(stats().cached_bytes, 0u);  // the tail stays cached
  EXPECT_TRUE(is_registered(base + front->map_size));
  release_huge(front);
  // Merged again: a request for the whole size gets the same block back.
  SegmentHeader* whole = acquire_huge(full - 4096, false, 0);
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(segment_base(whole), base);
  EXPECT_EQ(whole->map_size, full);
  release_huge(whole);
  reset();
}

TEST(Source, ResizeHugeKeepsContentsGrowAndShrink) {
  reset();
  SegmentHeader* h = acquire_huge(3 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  auto* p = reinterpret_cast<unsigned char*>(segment_base(h) + 8192);
  for (size_t i = 0; i < 2 * kMiB; ++i) p[i] = static_cast<unsigned char>(i * 13);
  SegmentHeader* g = resize_huge(h, 64 * kMiB);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(segment_base(g) % kSegmentSize, 0u);
  EXPECT_EQ(g->map_size, 64 * kMiB);
  EXPECT_TRUE(is_registered(segment_base(g)));
  p = reinterpret_cast<unsigned char*>(segment_base(g) + 8192);
  for (size_t i = 0; i < 2 * kMiB; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 13));
  SegmentHeader* s = resize_huge(g, 4 * kMiB);
  ASSERT_EQ(s, g);  // shrinking never moves
  for (size_t i = 0; i < 2 * kMiB; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 13));
  release_huge(s);
  reset();
}

TEST(Source, RegistryIsSafeForAnyAddress) {
  int x;
  EXPECT_FALSE(is_registered(reinterpret_cast<uintptr_t>(&x) & ~kSegmentMask));
  EXPECT_FALSE(is_registered(0));
  EXPECT_FALSE(is_registered(~uintptr_t{0} & ~kSegmentMask));
}

namespace {
// First byte past the source's own headers that the zero promise can be checked from: the
// page holding the headers is kept on discard (its tail is the chunk layer's business).
constexpr size_t kPastHeaderPage = 8192;
static_assert(kRunTableBytes + sizeof(SegmentHeader) <= kPastHeaderPage);

bool reads_zero(uintptr_t from, uintptr_t to) {
  for (uintptr_t a = from; a < to; a += 64) {
    if (*reinterpret_cast<const uint64_t*>(a) != 0) return false;
  }
  return true;
}
}  // namespace

TEST(Source, FreshSegmentMovesStatsAndTrimUndoesIt) {
  reset();
  SourceStats s0 = stats();
  SegmentHeader* a = acquire_segment(SegmentKind::kMedium, nullptr, 0);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->is_zero);
  EXPECT_TRUE(a->is_segment);
  SourceStats s1 = stats();
  EXPECT_EQ(s1.mapped_bytes, s0.mapped_bytes + kSegmentSize);
  EXPECT_EQ(s1.segment_count, s0.segment_count + 1);
  EXPECT_GE(s1.peak_mapped_bytes, s1.mapped_bytes);
  EXPECT_EQ(s1.huge_count, s0.huge_count);
  release_segment(a);
  SourceStats s2 = stats();
  EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes);  // cached, still mapped
  EXPECT_EQ(s2.cached_bytes, s0.cached_bytes + kSegmentSize);
  EXPECT_EQ(trim_cache(), s2.cached_bytes);
  SourceStats s3 = stats();
  EXPECT_EQ(s3.mapped_bytes, s0.mapped_bytes);
  EXPECT_EQ(s3.segment_count, s0.segment_count);
  EXPECT_EQ(s3.cached_bytes, 0u);
  EXPECT_EQ(s3.peak_mapped_bytes, s1.peak_mapped_bytes);  // a high-water mark
  EXPECT_EQ(trim_cache(), 0u);  // nothing left
}

TEST(Source, ZeroBudgetUnregistersAtOnce) {
  reset(0);
  SegmentHeader* a = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  SegmentHeader* h = acquire_huge(6 * kMiB, false, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(h, nullptr);
  uintptr_t ab = segment_base(a), hb = segment_base(h);
  EXPECT_TRUE(is_registered(ab));
  EXPECT_TRUE(is_registered(hb));
  release_segment(a);
  release_huge(h);
  EXPECT_FALSE(is_registered(ab));
  EXPECT_FALSE(is_registered(hb));
  reset();
}

TEST(Source, CacheKeepsTheWorkingSetOfTheRecentPeakBeyondTheBudget) {
  // The budget is one segment, but three were in use a moment ago: freed and taken again
  // within the decay time, they are reused without a new mapping (no page faults).
  reset(kSegmentSize);
  SourceStats s0 = stats();
  SegmentHeader* seg[3];
  uintptr_t base[3];
  for (int i = 0; i < 3; ++i) {
    seg[i] = acquire_segment(SegmentKind::kSmall, nullptr, 0);
    ASSERT_NE(seg[i], nullptr);
    base[i] = segment_base(seg[i]);
  }
  for (auto* s : seg) release_segment(s);
  SourceStats s1 = stats();
  EXPECT_EQ(s1.cached_bytes, 3 * kSegmentSize);
  EXPECT_EQ(s1.mapped_bytes, s0.mapped_bytes + 3 * kSegmentSize);
  for (auto& s : seg) {
    s = acquire_segment(SegmentKind::kMedium, nullptr, 0);
    uintptr_t b = segment_base(s);
    EXPECT_TRUE(b == base[0] || b == base[1] || b == base[2]);
  }
  EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes) << "no new mapping";
  for (auto* s : seg) release_segment(s);
  EXPECT_EQ(trim_cache(), 3 * kSegmentSize);
  reset();
}

TEST(Source, MoreInUseLeavesLessRoomInTheCache) {
  // Three segments cached (the recent peak), then a 40 MiB block in use: the place may now
  // hold 1/8 of that peak beyond what it uses, so the older segments go, newest kept.
  reset(kSegmentSize);
  SegmentHeader* seg[3];
  uintptr_t base[3];
  for (int i = 0; i < 3; ++i) {
    seg[i] = acquire_segment(SegmentKind::kSmall, nullptr, 0);
    ASSERT_NE(seg[i], nullptr);
    base[i] = segment_base(seg[i]);
  }
  for (auto* s : seg) release_segment(s);
  EXPECT_EQ(stats().cached_bytes, 3 * kSegmentSize);
  SegmentHeader* h = acquire_huge(40 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(stats().cached_bytes, kSegmentSize);
  EXPECT_FALSE(is_registered(base[0]));  // oldest evicted first
  EXPECT_FALSE(is_registered(base[1]));
  EXPECT_TRUE(is_registered(base[2]));
  release_huge(h);
  reset();
}

TEST(Source, TrimForgetsThePeak) {
  reset(kSegmentSize);
  SegmentHeader* seg[3];
  for (auto& s : seg) s = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  for (auto* s : seg) release_segment(s);
  trim_cache();
  // After malloc_trim the working set starts again: only the budget is kept.
  SegmentHeader* a = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  SegmentHeader* b = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  release_segment(a);
  release_segment(b);
  EXPECT_EQ(stats().cached_bytes, 2 * kSegmentSize) << "two in use at the new peak";
  trim_cache();
  reset();
}

TEST(Source, ReusedSegmentsThatClaimZeroReadZero) {
  reset();
  constexpr int kN = 5;
  SegmentHeader* seg[kN];
  for (auto& s : seg) {
    s = acquire_segment(SegmentKind::kMedium, nullptr, 0);
    ASSERT_NE(s, nullptr);
    uintptr_t b = segment_base(s);
    std::memset(reinterpret_cast<void*>(b + kPastHeaderPage), 0xa5, kSegmentSize - kPastHeaderPage);
  }
  for (auto* s : seg) release_segment(s);
  int dirty = 0;
  for (auto& s : seg) {
    s = acquire_segment(SegmentKind::kSmall, nullptr, 0);
    ASSERT_NE(s, nullptr);
    uintptr_t b = segment_base(s);
    if (s->is_zero) {
      EXPECT_TRUE(reads_zero(b + kPastHeaderPage, b + kSegmentSize)) << "segment claims zero";
    } else {
      ++dirty;
    }
  }
  // Only a couple of freed segments keep their pages; the rest were given back on release.
  EXPECT_LE(dirty, 2);
  EXPECT_LT(dirty, kN);
  for (auto* s : seg) release_segment(s);
  reset();
}

TEST(Source, HugeReuseWithWantZeroReadsZero) {
  reset();
  SegmentHeader* h = acquire_huge(8 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  uintptr_t b = segment_base(h);
  size_t header_end = kRunTableBytes + sizeof(SegmentHeader);
  std::memset(reinterpret_cast<void*>(b + header_end), 0xff, h->map_size - header_end);
  release_huge(h);
  SegmentHeader* z = acquire_huge(8 * kMiB, true, 0);
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(segment_base(z), b);  // from the cache
  EXPECT_TRUE(z->is_zero);
  // Every byte after the source's header reads zero (user data may start right there).
  const auto* c = reinterpret_cast<const unsigned char*>(b);
  for (size_t i = header_end; i < kPastHeaderPage; ++i) ASSERT_EQ(c[i], 0) << i;
  EXPECT_TRUE(reads_zero(b + kPastHeaderPage, b + z->map_size));
  release_huge(z);
  // Without want_zero the same block comes back as-is and says so.
  SegmentHeader* d = acquire_huge(8 * kMiB, false, 0);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(segment_base(d), b);
  EXPECT_FALSE(d->is_zero);
  release_huge(d);
  reset();
}

TEST(Source, HugeRequestGrowsTheLargestSmallerCachedBlock) {
  reset();
  SourceStats s0 = stats();
  SegmentHeader* h = acquire_huge(8 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  release_huge(h);
  SegmentHeader* g = acquire_huge(12 * kMiB, false, 0);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->map_size, 12 * kMiB);
  EXPECT_EQ(g->kind, SegmentKind::kHuge);
  // Grown (in place or moved by mremap), never mapped anew beside the old block.
  SourceStats s1 = stats();
  EXPECT_EQ(s1.mapped_bytes, s0.mapped_bytes + 12 * kMiB);
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_EQ(s1.huge_bytes, s0.huge_bytes + 12 * kMiB);
  EXPECT_TRUE(is_registered(segment_base(g)));
  release_huge(g);
  reset();
}

TEST(Source, ResizeHugeMovesWhenBlockedAndKeepsContents) {
  reset();
  SegmentHeader* h = acquire_huge(3 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  uintptr_t old_base = segment_base(h);
  // Occupy the range right after the block so it cannot grow in place.
  void* blocker = mmap(reinterpret_cast<void*>(old_base + h->map_size), 4096, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  bool blocked = blocker != MAP_FAILED || errno == EEXIST;  // EEXIST: already occupied
  ASSERT_TRUE(blocked);
  auto* p = reinterpret_cast<unsigned char*>(old_base + 8192);
  for (size_t i = 0; i < 3 * kMiB - 8192; i += 8) std::memcpy(p + i, &i, 8);
  SourceStats s0 = stats();
  SegmentHeader* g = resize_huge(h, 20 * kMiB);
  ASSERT_NE(g, nullptr);
  uintptr_t nb = segment_base(g);
  EXPECT_NE(nb, old_base);
  EXPECT_EQ(nb % kSegmentSize, 0u);
  EXPECT_EQ(g->map_size, 20 * kMiB);
  EXPECT_TRUE(is_registered(nb));
  EXPECT_FALSE(is_registered(old_base));
  EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes + 17 * kMiB);
  EXPECT_EQ(stats().huge_bytes, s0.huge_bytes + 17 * kMiB);
  p = reinterpret_cast<unsigned char*>(nb + 8192);
  for (size_t i = 0; i < 3 * kMiB - 8192; i += 8) {
    size_t v;
    std::memcpy(&v, p + i, 8);
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(p[20 * kMiB - 8192 - 1], 0);  // the grown part is fresh
  // Shrink below the original size: in place, contents kept.
  SegmentHeader* s = resize_huge(g, 2 * kMiB);
  ASSERT_EQ(s, g);
  EXPECT_EQ(s->map_size, 2 * kMiB);
  EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes - kMiB);
  for (size_t i = 0; i < 2 * kMiB - 8192; i += 8) {
    size_t v;
    std::memcpy(&v, p + i, 8);
    ASSERT_EQ(v, i);
  }
  release_huge(s);
  if (blocker != MAP_FAILED) munmap(blocker, 4096);
  reset();
}

TEST(Source, ResizeHugeFailureLeavesTheBlockIntact) {
  reset();
  SegmentHeader* h = acquire_huge(3 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  uintptr_t b = segment_base(h);
  // Block growth in place, so a grow must reserve and move: the steps are in-place mremap
  // (fails), reserve, mremap to the target. Fault injection picks the step that fails.
  void* blocker = mmap(reinterpret_cast<void*>(b + h->map_size), 4096, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(blocker, MAP_FAILED) << "the range after a fresh huge block was expected free";
  auto* p = reinterpret_cast<unsigned char*>(b + 8192);
  std::memset(p, 0x3c, 3 * kMiB - 8192);
  SourceStats s0 = stats();
  auto intact = [&] {
    EXPECT_EQ(h->map_size, 3 * kMiB);
    EXPECT_EQ(h->kind, SegmentKind::kHuge);
    EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes);
    EXPECT_EQ(stats().huge_bytes, s0.huge_bytes);
    EXPECT_TRUE(is_registered(b));
    for (size_t i = 0; i < 3 * kMiB - 8192; i += 4096) ASSERT_EQ(p[i], 0x3c);
  };
  for (unsigned long step : {2ul, 3ul}) {  // 2: the reserve fails; 3: the mremap to the target
    mpcalloc::os::fail_after(step);
    SegmentHeader* r = resize_huge(h, 64 * kMiB);
    mpcalloc::os::fail_after(0);
    EXPECT_EQ(r, nullptr) << "step " << step;
    intact();
  }
  mpcalloc::os::fail_after(1);  // a shrink that cannot happen in place reports failure too
  EXPECT_EQ(resize_huge(h, 2 * kMiB), nullptr);
  mpcalloc::os::fail_after(0);
  intact();
  // With no injection the same grow succeeds by moving.
  SegmentHeader* g = resize_huge(h, 64 * kMiB);
  ASSERT_NE(g, nullptr);
  EXPECT_NE(segment_base(g), b);
  auto* q = reinterpret_cast<unsigned char*>(segment_base(g) + 8192);
  for (size_t i = 0; i < 3 * kMiB - 8192; i += 4096) ASSERT_EQ(q[i], 0x3c);
  release_huge(g);
  munmap(blocker, 4096);
  reset();
}

TEST(Source, DecayReturnsOldBlocks) {
  reset();
  configure({256 * kMiB, 1, 0});  // anything cached for 1 ms is old
  SourceStats s0 = stats();
  SegmentHeader* a = acquire_segment(SegmentKind::kSmall, nullptr, 0);
  ASSERT_NE(a, nullptr);
  uintptr_t ab = segment_base(a);
  release_segment(a);
  timespec ts{0, 150 * 1000 * 1000};  // past the decay step's 100 ms rate limit
  nanosleep(&ts, nullptr);
  decay_tick();
  EXPECT_EQ(stats().cached_bytes, 0u);
  EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes);
  EXPECT_FALSE(is_registered(ab));
  reset();
}

TEST(Source, HugeRequestFallsBackToAFreshMappingWhenTheCachedBlockCannotGrow) {
  reset();
  SegmentHeader* h = acquire_huge(8 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  uintptr_t b = segment_base(h);
  void* blocker = mmap(reinterpret_cast<void*>(b + h->map_size), 4096, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(blocker, MAP_FAILED);
  release_huge(h);
  SourceStats s0 = stats();
  ASSERT_EQ(s0.cached_bytes, 8 * kMiB);
  // The grow of the cached block fails (in place: blocked; the move's reserve: injected).
  mpcalloc::os::fail_after(2);
  SegmentHeader* g = acquire_huge(12 * kMiB, false, 0);
  mpcalloc::os::fail_after(0);
  ASSERT_NE(g, nullptr);
  EXPECT_NE(segment_base(g), b);
  EXPECT_GE(g->map_size, 12 * kMiB);
  EXPECT_EQ(g->kind, SegmentKind::kHuge);
  SourceStats s1 = stats();
  EXPECT_EQ(s1.cached_bytes, 8 * kMiB);  // the old block went back to the cache
  EXPECT_TRUE(is_registered(b));
  EXPECT_EQ(s1.mapped_bytes, s0.mapped_bytes + g->map_size);
  EXPECT_EQ(s1.huge_count, s0.huge_count + 1);
  release_huge(g);
  munmap(blocker, 4096);
  reset();
}

TEST(Source, BlockCachedAfterTheClockWasReadIsNotDecayed) {
  // A thread reads the clock, another caches a block a millisecond later, then the first takes
  // the lock and evicts: the block's age must not wrap to 2^64 ms (issue 9: fresh blocks were
  // evicted at once).
  EXPECT_FALSE(decayed(1001, 1000, 500));
  EXPECT_FALSE(decayed(1000, 1000, 500));
  EXPECT_FALSE(decayed(600, 1000, 500));
  EXPECT_TRUE(decayed(500, 1000, 500));
  EXPECT_TRUE(decayed(0, 1000, 500));
  EXPECT_FALSE(decayed(0, 1000, 0)) << "0 means no decay";
}
