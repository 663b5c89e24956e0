// Segments for the small and medium chunk managers: from the place's cache, else fresh.
// Layer source.
#include <cstring>

#include "base/bits.h"
#include "os/os_memory.h"
#include "source/block_source.h"
#include "source/place.h"

namespace mpcalloc::source {

SegmentHeader* acquire_segment(SegmentKind kind, void* owner, int place) {
  SegmentHeader* seg = cache_take_segment(place_of(place));
  if (seg != nullptr) {
    std::memset(reinterpret_cast<void*>(segment_base(seg)), 0, kRunTableBytes);
  } else if ((seg = map_block(kSegmentSize, place, true)) == nullptr) {
    seg = take_foreign(place, kSegmentSize, false);
    if (seg == nullptr) return nullptr;
    std::memset(reinterpret_cast<void*>(segment_base(seg)), 0, kRunTableBytes);
  }
  init_header(seg, kind, owner, kSegmentSize, seg->is_zero);
  account_segment_use(place_of(seg), kind, +1);
  return seg;
}

namespace {
// Freed segments in a place's cache that keep their pages. Beyond this many, a freed segment's
// pages are given back as it enters the cache (the mapping stays for cheap reuse): a heap
// that gives a segment back rarely needs all of its pages again soon (mstress: 164 MiB peak RSS
// keeping them all, 138 MiB keeping two). A thread's heap no longer gives its segments back
// when the thread ends (it goes to the pool warm), so thread churn does not pay for this.
constexpr size_t kDirtySegmentsKept = 2;
}  // namespace

void release_segment(SegmentHeader* seg) {
  account_segment_use(place_of(seg), seg->kind, -1);
  seg->is_zero = false;
  if (cache_dirty_segments(place_of(seg)) >= kDirtySegmentsKept) seg->is_zero = zero_past_header(seg);
  cache_put(seg, false);
}

}  // namespace mpcalloc::source
