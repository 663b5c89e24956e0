// Layer source: segments, huge blocks, the cache (budget, split/merge, trim), the registry.
// Tests share one process's source: they assert on deltas and trim first.
#include <gtest/gtest.h>

#include <cstring>

#include "source/block_source.h"

using namespace mpcalloc::source;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
void reset(size_t budget = 256 * kMiB) {
  configure({budget, 60000});
  trim_cache();
}
}  // namespace

TEST(Source, SegmentIsAlignedRegisteredAndHeaded) {
  reset();
  int owner = 0;
  SegmentHeader* s = acquire_segment(SegmentKind::kSmall, &owner);
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
  SegmentHeader* a = acquire_segment(SegmentKind::kMedium, nullptr);
  ASSERT_NE(a, nullptr);
  std::memset(reinterpret_cast<void*>(segment_base(a)), 0xee, kRunTableBytes);
  SourceStats before = stats();
  release_segment(a);
  EXPECT_EQ(stats().cached_bytes, before.cached_bytes + kSegmentSize);
  SegmentHeader* b = acquire_segment(SegmentKind::kSmall, nullptr);
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
  SegmentHeader* a = acquire_segment(SegmentKind::kSmall, nullptr);
  SegmentHeader* h = acquire_huge(10 * kMiB, false);
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
  SegmentHeader* h = acquire_huge(6 * kMiB + 5, true);
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
  SegmentHeader* big = acquire_huge(40 * kMiB, false);
  ASSERT_NE(big, nullptr);
  uintptr_t base = segment_base(big);
  size_t full = big->map_size;
  release_huge(big);
  SourceStats mid = stats();
  // A small request takes the front of the cached block without a new mapping.
  SegmentHeader* front = acquire_huge(5 * kMiB, false);
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(segment_base(front), base);
  EXPECT_LT(front->map_size, full);
  EXPECT_EQ(stats().mapped_bytes, mid.mapped_bytes);
  EXPECT_GT(stats().cached_bytes, 0u);  // the tail stays cached
  EXPECT_TRUE(is_registered(base + front->map_size));
  release_huge(front);
  // Merged again: a request for the whole size gets the same block back.
  SegmentHeader* whole = acquire_huge(full - 4096, false);
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(segment_base(whole), base);
  EXPECT_EQ(whole->map_size, full);
  release_huge(whole);
  reset();
}

TEST(Source, ResizeHugeKeepsContentsGrowAndShrink) {
  reset();
  SegmentHeader* h = acquire_huge(3 * kMiB, false);
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
