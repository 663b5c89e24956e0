// Segments for the small and medium chunk managers: from the place's cache, else fresh.
// Layer source.
#include <cstring>

#include "base/bits.h"
#include "os/os_memory.h"
#include "source/block_source.h"
#include "source/place.h"

namespace mpcalloc::source {
namespace {
// Free segments in a place's cache whose pages are still resident. Beyond this many, a freed
// segment's pages are given back (MADV_DONTNEED) as it enters the cache: the mapping stays for
// cheap reuse, the RSS goes.
constexpr size_t kDirtySegmentsKept = 2;
}  // namespace

SegmentHeader* acquire_segment(SegmentKind kind, void* owner, int place) {
  SegmentHeader* seg = cache_take_segment(place_of(place));
  if (seg != nullptr) {
    std::memset(reinterpret_cast<void*>(segment_base(seg)), 0, kRunTableBytes);
  } else {
    seg = map_block(kSegmentSize, place, true);
    if (seg == nullptr) return nullptr;
  }
  init_header(seg, kind, owner, kSegmentSize, seg->is_zero);
  return seg;
}

void release_segment(SegmentHeader* seg) {
  seg->is_zero = false;
  if (cache_dirty_segments(place_of(seg)) >= kDirtySegmentsKept &&
      cache_budget() >= kSegmentSize) {
    uintptr_t base = segment_base(seg);
    size_t keep = base::align_up(kRunTableBytes + sizeof(SegmentHeader), os::kPageSize);
    if (os::discard(reinterpret_cast<void*>(base + keep), kSegmentSize - keep)) seg->is_zero = true;
  }
  cache_put(seg, false);
}

}  // namespace mpcalloc::source
