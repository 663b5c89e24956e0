// Layer source: the records of the kernel mappings a huge block spans (mappings.h), which tell
// mremap what it can grow or move in one call.
#include <gtest/gtest.h>

#include <utility>

#include "source/mappings.h"

using namespace mpcalloc::source;

namespace {
constexpr size_t kMiB = size_t{1} << 20;

SegmentHeader record(size_t size, std::initializer_list<std::pair<size_t, uint32_t>> parts) {
  SegmentHeader h{};
  h.map_size = size;
  for (auto [at, id] : parts) mappings_add(&h, at, id);
  return h;
}
}  // namespace

TEST(Mappings, SplitDividesTheRecordsAtTheCut) {
  SegmentHeader a = record(24 * kMiB, {{0, 1}, {10 * kMiB, 2}, {16 * kMiB, 3}});
  SegmentHeader tail{};
  tail.map_size = 12 * kMiB;
  mappings_split(&a, &tail, 12 * kMiB);  // inside mapping 2
  a.map_size = 12 * kMiB;
  ASSERT_EQ(a.mappings, 2);
  EXPECT_EQ(a.mapping_id[1], 2u);
  ASSERT_EQ(tail.mappings, 2);
  EXPECT_EQ(mapping_offset(&tail, 0), 0u);
  EXPECT_EQ(tail.mapping_id[0], 2u);  // the mapping the cut runs through goes on in the tail
  EXPECT_EQ(mapping_offset(&tail, 1), 4 * kMiB);
  EXPECT_EQ(tail.mapping_id[1], 3u);

  SegmentHeader b = record(24 * kMiB, {{0, 1}, {16 * kMiB, 3}});
  SegmentHeader t2{};
  mappings_split(&b, &t2, 16 * kMiB);  // exactly where mapping 3 starts
  EXPECT_EQ(b.mappings, 1);
  ASSERT_EQ(t2.mappings, 1);
  EXPECT_EQ(t2.mapping_id[0], 3u);
}

TEST(Mappings, AppendJoinsTheSameMappingAcrossTheSeamAndRefusesPastTheLimit) {
  SegmentHeader left = record(8 * kMiB, {{0, 1}, {4 * kMiB, 2}});
  SegmentHeader right = record(8 * kMiB, {{0, 2}, {4 * kMiB, 5}});
  ASSERT_TRUE(mappings_append(&left, &right, 8 * kMiB));
  ASSERT_EQ(left.mappings, 3);  // mapping 2 goes on across the seam: one record
  EXPECT_EQ(mapping_offset(&left, 2), 12 * kMiB);
  EXPECT_EQ(left.mapping_id[2], 5u);

  SegmentHeader full{};
  full.map_size = kMaxMappings * kMiB;
  for (int i = 0; i < kMaxMappings; ++i) mappings_add(&full, i * kMiB, 100 + i);
  SegmentHeader other = record(kMiB, {{0, 7}});
  EXPECT_FALSE(mappings_append(&full, &other, full.map_size));
  EXPECT_EQ(full.mappings, kMaxMappings);  // unchanged

  SegmentHeader t = record(8 * kMiB, {{0, 1}, {2 * kMiB, 2}, {6 * kMiB, 3}});
  mappings_truncate(&t, 6 * kMiB);
  EXPECT_EQ(t.mappings, 2);
  mappings_truncate(&t, kMiB);
  EXPECT_EQ(t.mappings, 1);
}
