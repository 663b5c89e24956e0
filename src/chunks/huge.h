// Huge blocks: one OS block per allocation, header at the segment-aligned start, resized with
// mremap (no copy). Alignments of a segment or more have no room for a header at the aligned
// start; they are kept in a small registry instead. Layer chunks: called by heap.
#pragma once
#include <cstddef>
#include <cstdint>

#include "source/segment.h"

namespace mpcalloc::chunks {

struct HugeHeader {
  source::SegmentHeader h;
  size_t user_offset;  // user pointer = segment base + user_offset
  size_t requested;    // the size last asked for (alloc or resize): tells a shrink from a growth
};

struct HugeResult {
  void* p;
  bool is_zero;
};

// The common resize of a huge block, inline: a growth that its mapping still holds (the block
// came larger from the cache, or has the headroom of an earlier growth). Records the size and
// returns true; false when huge_resize must decide.
inline bool huge_grow_in_place(source::SegmentHeader* seg, size_t new_size) {
  HugeHeader* hh = reinterpret_cast<HugeHeader*>(seg);
  if (new_size < hh->requested || new_size > seg->map_size - hh->user_offset) return false;
  hh->requested = new_size;
  return true;
}

// align < kSegmentSize, at `place` (source::kPlace*, or a NUMA node). {nullptr,false} when
// out of memory.
HugeResult huge_alloc(size_t size, size_t align, bool want_zero, int place);
void huge_free(source::SegmentHeader* seg);
size_t huge_usable(const source::SegmentHeader* seg);
// New user pointer (possibly moved, contents kept) or nullptr (block unchanged).
void* huge_resize(source::SegmentHeader* seg, size_t new_size);

// Alignment >= kSegmentSize: the user pointer is segment aligned.
void* huge_alloc_overaligned(size_t size, size_t align, int place);
// false when p is not an over-aligned huge block.
bool huge_free_overaligned(void* p);
// 0 when p is not an over-aligned huge block.
size_t huge_usable_overaligned(const void* p);
void huge_fork_prepare();
void huge_fork_parent();
void huge_fork_child();

}  // namespace mpcalloc::chunks
