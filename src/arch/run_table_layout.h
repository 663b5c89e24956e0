// Where the free fast path finds a pointer's run owner key and local free list, in numbers the
// architecture headers can build into their code. Layer arch: filled in by heap (heap.h).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::arch {

// A segment is 2^segment_shift bytes aligned to its size and starts with the run table: the
// array of owner keys (one word per run) at offset 0 and the array of local free lists at
// local_free_offset. A pointer's run index is (p mod segment size) >> run_shift.
struct RunTableLayout {
  unsigned segment_shift;
  unsigned run_shift;
  unsigned local_free_offset;

  constexpr uintptr_t segment_mask() const { return (uintptr_t{1} << segment_shift) - 1; }
  // The bits of a pointer that hold its run index.
  constexpr uintptr_t run_bits() const {
    return segment_mask() & ~((uintptr_t{1} << run_shift) - 1);
  }
  constexpr bool valid() const {
    return segment_shift > run_shift && segment_shift < 32 && run_shift >= 3 &&
           local_free_offset % sizeof(void*) == 0 &&
           local_free_offset >= (size_t{1} << (segment_shift - run_shift)) * sizeof(void*);
  }
};

}  // namespace mpcalloc::arch
