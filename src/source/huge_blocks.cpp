// Huge blocks: taken from the place's cache (best fit, split, grown with mremap) or mapped
// fresh; resized without copying; over-aligned mappings. Layer source.
#include <cstring>

#include "base/bits.h"
#include "os/os_memory.h"
#include "source/block_source.h"
#include "source/mappings.h"
#include "source/place.h"
#include "source/registry.h"

namespace mpcalloc::source {
namespace {

// A cached block made ready for a new life: zero if asked (its pages dropped rather than
// rewritten), and in any case a clean run table, since the free fast path reads the owner key
// at the block's base and a tail split off a larger block has the old user data there.
bool prepare_reused(SegmentHeader* seg, bool want_zero) {
  uintptr_t base = segment_base(seg);
  bool zero = seg->is_zero;
  if (want_zero && !zero) zero = zero_past_header(seg);
  if (!seg->is_zero) std::memset(reinterpret_cast<void*>(base), 0, kRunTableBytes);
  return zero;
}

}  // namespace

SegmentHeader* acquire_huge(size_t map_size, bool want_zero, int place) {
  map_size = base::align_up(map_size, os::page_size());
  Place& pl = place_of(place);
  if (SegmentHeader* found = cache_take_huge(pl, map_size)) {
    bool zero = prepare_reused(found, want_zero);
    SegmentHeader* seg = found;
    if (found->map_size < map_size) {
      seg = resize_huge(found, map_size);
      // Could not grow it: give it back and fall through to a fresh mapping.
      if (seg == nullptr) cache_put(found, true);
    }
    if (seg != nullptr) {
      init_header(seg, SegmentKind::kHuge, nullptr, seg->map_size, zero);
      account_huge(pl, +1, seg->map_size);
      return seg;
    }
  }
  SegmentHeader* seg = map_block(map_size, place, false);
  if (seg == nullptr) {
    // Out of memory for a fresh mapping: maybe another node has a free block (auto mode).
    seg = take_foreign(place, map_size, true);
    if (seg == nullptr) return nullptr;
    bool zero = prepare_reused(seg, want_zero);
    init_header(seg, SegmentKind::kHuge, nullptr, seg->map_size, zero);
    account_huge(place_of(seg), +1, seg->map_size);
    return seg;
  }
  seg->kind = SegmentKind::kHuge;
  account_huge(pl, +1, map_size);
  return seg;
}

void release_huge(SegmentHeader* seg) {
  account_huge(place_of(seg), -1, seg->map_size);
  seg->is_zero = false;
  cache_put(seg, true);
}

SegmentHeader* resize_huge(SegmentHeader* seg, size_t new_map_size) {
  new_map_size = base::align_up(new_map_size, os::page_size());
  uintptr_t base = segment_base(seg);
  size_t old_size = seg->map_size;
  if (new_map_size == old_size) return seg;
  bool in_use = seg->kind == SegmentKind::kHuge;
  size_t growth = new_map_size > old_size ? new_map_size - old_size : 0;
  if (growth != 0 && (!mappings_fit_size(new_map_size) || !charge(growth))) return nullptr;
  // The last mapping grows or shrinks in place; a shrink past its start unmaps the tail.
  size_t last = mapping_offset(seg, seg->mappings - 1);
  bool done = new_map_size > last
                  ? os::remap_in_place(reinterpret_cast<void*>(base + last), old_size - last, new_map_size - last)
                  : os::unmap(reinterpret_cast<void*>(base + new_map_size), old_size - new_map_size);
  if (done) {
    seg->map_size = new_map_size;
    mappings_truncate(seg, new_map_size);
  } else {
    // Only a growth moves, and only a block of one mapping (several would move one by one,
    // and a refusal half way could not be undone: the range left may be another's by then).
    if (new_map_size < old_size || seg->mappings != 1) {
      if (growth != 0) uncharge(growth);
      return nullptr;
    }
    // Move to a fresh aligned range: reserve it, then mremap onto it (pages move, no copy).
    size_t over = new_map_size + kSegmentSize;
    void* r = os::reserve(over);
    if (r == nullptr) {
      uncharge(growth);
      return nullptr;
    }
    uintptr_t rs = reinterpret_cast<uintptr_t>(r);
    uintptr_t target = base::align_up(rs, kSegmentSize);
    // The old range is free for the kernel to hand out (to another thread's new segment) the
    // moment mremap returns: its registration goes first, or it would be cleared afterwards
    // under that segment's feet.
    registry_set(base, false);
    if (!registry_set(target, true) ||
        !os::remap_to(reinterpret_cast<void*>(base), old_size, new_map_size,
                      reinterpret_cast<void*>(target))) {
      registry_set(target, false);
      registry_set(base, true);
      os::unmap(r, over);
      uncharge(growth);
      return nullptr;
    }
    os::unmap(r, target - rs);
    os::unmap(reinterpret_cast<void*>(target + new_map_size), rs + over - (target + new_map_size));
    seg = segment_header(target);
    seg->map_size = new_map_size;
    seg->mapping_id[0] = new_mapping_id();  // a mapping of its own now
  }
  if (new_map_size < old_size) uncharge(old_size - new_map_size);
  account_resize(place_of(seg), static_cast<long>(new_map_size) - static_cast<long>(old_size),
                 in_use);
  return seg;
}

bool migrate_huge(SegmentHeader* seg, int node) {
  if (node < 0 || node >= kMaxNodes) return false;
  Place& from = place_of(seg);
  if (!bind_to(reinterpret_cast<void*>(segment_base(seg)), seg->map_size, node, true)) return false;
  // The policy cuts the mappings at the block's ends: they no longer continue into neighbours.
  seg->mapping_id[0] = new_mapping_id();
  seg->mapping_id[seg->mappings - 1] = new_mapping_id();
  if (seg->node == node) return true;
  // The block now lives at `node`: count it there, and cache it there when it is freed.
  account_huge(from, -1, seg->map_size);
  account_resize(from, -static_cast<long>(seg->map_size), false);  // the global charge stays
  seg->node = node;
  account_resize(place_of(node), static_cast<long>(seg->map_size), false);
  account_huge(place_of(node), +1, seg->map_size);
  return true;
}

void* map_overaligned(size_t map_size, size_t align, int place) {
  void* addr = map_fresh(map_size, align, place, false);
  if (addr == nullptr) return nullptr;
  Place& pl = place_of(place);
  account_resize(pl, static_cast<long>(map_size), false);
  account_huge(pl, +1, map_size);
  return addr;
}

void unmap_overaligned(void* p, size_t map_size, int place) {
  Place& pl = place_of(place);
  account_huge(pl, -1, map_size);
  if (os::unmap(p, map_size)) {
    account_resize(pl, -static_cast<long>(map_size), false);
    uncharge(map_size);
  } else {
    base::LockGuard guard(pl.lock);
    ++pl.unmap_failures;
  }
}

}  // namespace mpcalloc::source
