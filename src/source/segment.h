// Segments: 4 MiB blocks aligned to 4 MiB, the unit every chunk manager carves. Layer source.
// The first kRunTableBytes of a segment belong to the chunk layer (the per-run table that the
// free fast path indexes from the address alone); the source's own header follows it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::source {

inline constexpr unsigned kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;
inline constexpr uintptr_t kSegmentMask = kSegmentSize - 1;
inline constexpr size_t kRunTableBytes = 4096;
inline constexpr uint64_t kSegmentMagic = 0x6d7063616c6c6f63ull;  // "mpcalloc"
// How many kernel mappings one huge block may be made of (see mappings.h).
inline constexpr int kMaxMappings = 32;

enum class SegmentKind : uint32_t { kNone = 0, kSmall = 1, kMedium = 2, kHuge = 3 };

struct SegmentHeader {
  uint64_t magic;
  SegmentKind kind;
  int32_t node;
  size_t map_size;       // bytes mapped from the OS for this segment (huge: the whole block)
  void* owner;           // owning heap (small, medium); nullptr for huge
  SegmentHeader* next;   // list links for whoever holds the segment (heap or cache)
  SegmentHeader* prev;
  uint64_t cached_at_ms; // when it entered the cache (decay)
  bool is_zero;          // every byte past the headers reads as zero
  bool is_segment;       // a kSegmentSize segment (small/medium), not a huge block
  // The kernel mappings the block spans, in address order (mappings.h): where each starts, in
  // 4 KiB units from the base, and which mapping it is part of.
  uint8_t mappings;
  uint32_t mapping_start[kMaxMappings];
  uint32_t mapping_id[kMaxMappings];
};

// The owning heap, read by frees of any thread while the heap that absorbs a pooled one
// rewrites it (a free that read the old owner sends the block there; that heap's drain
// forwards it): relaxed atomics, plain moves.
inline void* segment_owner(const SegmentHeader* h) { return __atomic_load_n(&h->owner, __ATOMIC_RELAXED); }
inline void set_segment_owner(SegmentHeader* h, void* owner) {
  __atomic_store_n(&h->owner, owner, __ATOMIC_RELAXED);
}

// The segment header for any address inside a segment's first kSegmentSize bytes.
inline SegmentHeader* segment_header(uintptr_t base) {
  return reinterpret_cast<SegmentHeader*>(base + kRunTableBytes);
}
inline uintptr_t segment_base_of(const void* p) {
  return reinterpret_cast<uintptr_t>(p) & ~kSegmentMask;
}
inline uintptr_t segment_base(const SegmentHeader* h) {
  return reinterpret_cast<uintptr_t>(h) - kRunTableBytes;
}

}  // namespace mpcalloc::source
