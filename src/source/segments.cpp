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
  return seg;
}

void release_segment(SegmentHeader* seg) {
  // Its pages stay resident while cached: the next heap that needs a segment (a new thread's,
  // often) reuses them without faults. Decay and the allowance return it to the OS.
  seg->is_zero = false;
  cache_put(seg, false);
}

}  // namespace mpcalloc::source
