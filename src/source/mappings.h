// The kernel mappings a huge block spans. mremap grows or moves one mapping at a time, and a
// block joined from cached pieces (their pages moved next to each other) stays several
// mappings: the kernel does not merge pages that came from different ones. So each block
// records where its mappings start and which mapping each is part of (an id given when a
// mapping is created or moved); a split divides the records, a merge of neighbours puts them
// end to end (one mapping when the same one continues across the seam).
// The records may list more mappings than the kernel has (it merges some), which costs an
// mremap call more, never fewer, unless a program cuts one itself (mprotect or mlock on part
// of its block): mremap then fails and the caller falls back (a copy, or a fresh mapping).
// Layer source (internal).
#pragma once
#include <cstddef>
#include <cstdint>

#include "source/segment.h"

namespace mpcalloc::source {

inline constexpr size_t kMappingUnit = 4096;  // the unit of mapping_start: the smallest page

// A new mapping id (never 0), for a mapping just created or moved.
uint32_t new_mapping_id();

inline void mappings_fresh(SegmentHeader* s) {
  s->mappings = 1;
  s->mapping_start[0] = 0;
  s->mapping_id[0] = new_mapping_id();
}
inline size_t mapping_offset(const SegmentHeader* s, int i) {
  return size_t{s->mapping_start[i]} * kMappingUnit;
}
inline size_t mapping_end(const SegmentHeader* s, int i) {
  return i + 1 < s->mappings ? mapping_offset(s, i + 1) : s->map_size;
}
inline uint32_t last_mapping_id(const SegmentHeader* s) { return s->mapping_id[s->mappings - 1]; }

// A block of `size` bytes can record mapping starts anywhere in it.
inline bool mappings_fit_size(size_t size) { return size / kMappingUnit <= UINT32_MAX; }

// Adds a mapping starting `at` bytes into the block. The caller checked there is room.
inline void mappings_add(SegmentHeader* s, size_t at, uint32_t id) {
  s->mapping_start[s->mappings] = static_cast<uint32_t>(at / kMappingUnit);
  s->mapping_id[s->mappings] = id;
  ++s->mappings;
}

// `front` is cut `at` bytes in (a page multiple): `tail`, the block starting there, gets the
// records of what lies past the cut, and `front` keeps those before it.
inline void mappings_split(SegmentHeader* front, SegmentHeader* tail, size_t at) {
  int k = 0;  // how many mappings start before the cut
  while (k < front->mappings && mapping_offset(front, k) < at) ++k;
  tail->mappings = 0;
  if (k == front->mappings || mapping_offset(front, k) != at) {
    mappings_add(tail, 0, front->mapping_id[k - 1]);  // the mapping the cut runs through
  }
  for (int i = k; i < front->mappings; ++i) mappings_add(tail, mapping_offset(front, i) - at, front->mapping_id[i]);
  front->mappings = static_cast<uint8_t>(k);
}

// Puts the records of `right`, which starts `at` bytes into `left` (left's end), after left's.
// false (nothing changed) when they do not fit.
inline bool mappings_append(SegmentHeader* left, const SegmentHeader* right, size_t at) {
  bool continues = last_mapping_id(left) == right->mapping_id[0];
  if (left->mappings + right->mappings - (continues ? 1 : 0) > kMaxMappings ||
      !mappings_fit_size(at + right->map_size)) {
    return false;
  }
  for (int i = continues ? 1 : 0; i < right->mappings; ++i) {
    mappings_add(left, at + mapping_offset(right, i), right->mapping_id[i]);
  }
  return true;
}

// The block shrinks to `size` bytes: the mappings past it are gone.
inline void mappings_truncate(SegmentHeader* s, size_t size) {
  while (s->mappings > 1 && mapping_offset(s, s->mappings - 1) >= size) --s->mappings;
}

}  // namespace mpcalloc::source
