// Huge blocks: taken from the place's cache (best fit, split, cached pieces joined or grown with
// mremap) or mapped fresh; resized without copying; over-aligned mappings. Layer source.
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

// Address space (PROT_NONE) of `size` bytes aligned to kSegmentSize, the slack around it given
// back: the target of a block being joined or moved. 0 when the kernel refused.
uintptr_t reserve_aligned(size_t size) {
  size_t over = size + kSegmentSize;
  void* r = os::reserve(over);
  if (r == nullptr) return 0;
  uintptr_t rs = reinterpret_cast<uintptr_t>(r);
  uintptr_t target = base::align_up(rs, kSegmentSize);
  os::unmap(r, target - rs);
  os::unmap(reinterpret_cast<void*>(target + size), rs + over - (target + size));
  return target;
}

// A last piece larger than the rest of a join's request by at least this gives only its tail,
// and its head stays cached; a smaller excess goes with the block.
constexpr size_t kMinHeadKept = kSegmentSize / 4;

// Cached pieces that together cover a request no single cached block fits (a chain from
// cache_take_huge, largest first, taken whole, at most kMaxMappings - 1 of them) become one
// block of map_size bytes, in an aligned range reserved for it: their pages are moved there end
// to end, mapping by mapping (mremap to a fixed address: the page tables move, no page is
// faulted in or copied), and fresh memory covers the rest. The last piece gives only the tail
// the request still needs, and its head (header and all) is cached again: a block larger than
// asked would count as in use and raise the peak the cache follows. nullptr when the kernel
// refused a call: the pieces whose pages had not moved yet are cached again, the pages already
// moved or cut off are unmapped (free memory: nothing is lost but pages to fault in again).
SegmentHeader* join_pieces(SegmentHeader* chain, size_t map_size) {
  SegmentHeader* piece[kMaxMappings];
  size_t piece_size[kMaxMappings];  // read before the header moves away
  int pieces = 0;
  size_t covered = 0;
  bool zero = true;
  for (SegmentHeader* p = chain; p != nullptr; p = p->next) {
    piece_size[pieces] = p->map_size;
    piece[pieces++] = p;
    covered += p->map_size;
    zero = zero && p->is_zero;
  }
  const int last = pieces - 1;  // > 0: a single piece large enough would have been a best fit
  // Where the part of the last piece that moves starts: past the head it keeps, if any.
  size_t keep = 0;
  if (covered > map_size && covered - map_size >= kMinHeadKept) {
    keep = covered - map_size;
    covered = map_size;
  }
  size_t size = covered > map_size ? covered : map_size;
  size_t fresh = size - covered;
  int place = chain->node;
  if (!mappings_fit_size(size)) {  // past 16 TiB: a fresh mapping, if anything
    for (int k = 0; k < pieces; ++k) cache_put(piece[k], true);
    return nullptr;
  }
  // An aligned range for the block. The fresh part is charged now; the pieces' charge carries
  // over to the block.
  uintptr_t target = 0;
  if (fresh == 0 || charge(fresh)) {
    target = reserve_aligned(size);
    if (target == 0 && fresh != 0) uncharge(fresh);
  }
  if (target != 0 && !registry_set(target, true)) {
    os::unmap(reinterpret_cast<void*>(target), size);
    if (fresh != 0) uncharge(fresh);
    target = 0;
  }
  if (target == 0) {
    for (int k = 0; k < pieces; ++k) cache_put(piece[k], true);
    return nullptr;
  }
  SegmentHeader block{};  // the records; the header itself arrives with the first piece
  int moved = 0;          // pieces whose pages (some or all) are at the target
  bool ok = true;
  for (size_t at = 0; ok && moved < pieces; ++moved) {
    SegmentHeader copy = *piece[moved];  // its header moves with its first mapping
    uintptr_t from = segment_base(piece[moved]);
    size_t skip = moved == last ? keep : 0;  // the head that stays
    // Unregistered first: once mremap returns, the old range may be another thread's mapping.
    if (skip == 0) registry_set(from, false);
    bool first = true;
    for (int i = 0; i < copy.mappings; ++i) {
      size_t end = mapping_end(&copy, i);
      if (end <= skip) continue;
      size_t off = mapping_offset(&copy, i) > skip ? mapping_offset(&copy, i) : skip;
      if (!os::remap_to(reinterpret_cast<void*>(from + off), end - off, end - off,
                        reinterpret_cast<void*>(target + at + off - skip))) {
        ok = false;
        if (first) {
          if (skip == 0) registry_set(from, true);  // untouched: cached again below
          --moved;
        } else {
          os::unmap(reinterpret_cast<void*>(from + off), copy.map_size - off);
        }
        break;
      }
      first = false;
      mappings_add(&block, at + off - skip, new_mapping_id());
    }
    // Its header is user memory now: cleared, or the block would not read zero.
    if (ok && zero && at != 0 && skip == 0) {
      std::memset(reinterpret_cast<void*>(target + at), 0, kRunTableBytes + sizeof(SegmentHeader));
    }
    at += copy.map_size - skip;
  }
  if (ok && fresh != 0) {
    void* f = reinterpret_cast<void*>(target + covered);
    ok = os::map_over_reserved(f, fresh);
    if (ok) {
      prepare_fresh(f, fresh, place, false);
      mappings_add(&block, covered, new_mapping_id());
    }
  }
  // The last piece, when it gave only its tail, is its head now: cached again.
  auto keep_head = [&] {
    piece[last]->map_size = keep;
    mappings_truncate(piece[last], keep);
    cache_put(piece[last], true);
  };
  Place& pl = place_of(place);
  if (!ok) {
    registry_set(target, false);
    os::unmap(reinterpret_cast<void*>(target), size);
    if (fresh != 0) uncharge(fresh);
    for (int k = 0; k < pieces; ++k) {
      if (k >= moved) {
        cache_put(piece[k], true);
      } else {
        size_t gone = piece_size[k] - (k == last ? keep : 0);
        account_resize(pl, -static_cast<long>(gone), false);
        uncharge(gone);
        if (k == last && keep != 0) keep_head();
      }
    }
    return nullptr;
  }
  account_resize(pl, static_cast<long>(fresh), false);
  SegmentHeader* seg = segment_header(target);
  seg->map_size = size;
  seg->is_zero = zero;
  seg->mappings = block.mappings;
  for (int i = 0; i < block.mappings; ++i) {
    seg->mapping_start[i] = block.mapping_start[i];
    seg->mapping_id[i] = block.mapping_id[i];
  }
  if (keep != 0) keep_head();
  return seg;
}

}  // namespace

SegmentHeader* acquire_huge(size_t map_size, bool want_zero, int place) {
  map_size = base::align_up(map_size, os::page_size());
  Place& pl = place_of(place);
  if (SegmentHeader* found = cache_take_huge(pl, map_size)) {
    // One block too small, of one mapping: grown (in place when it can be). Otherwise pieces
    // to join. When that fails, they are cached again and the request falls through to a
    // fresh mapping.
    SegmentHeader* seg = found;
    if (found->map_size < map_size) {
      if (found->next == nullptr && found->mappings == 1) {
        seg = resize_huge(found, map_size);
        if (seg == nullptr) cache_put(found, true);
      } else {
        seg = join_pieces(found, map_size);
      }
    }
    if (seg != nullptr) {
      bool zero = prepare_reused(seg, want_zero);
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
    uintptr_t target = reserve_aligned(new_map_size);
    if (target == 0) {
      uncharge(growth);
      return nullptr;
    }
    // The old range is free for the kernel to hand out (to another thread's new segment) the
    // moment mremap returns: its registration goes first, or it would be cleared afterwards
    // under that segment's feet.
    registry_set(base, false);
    if (!registry_set(target, true) ||
        !os::remap_to(reinterpret_cast<void*>(base), old_size, new_map_size,
                      reinterpret_cast<void*>(target))) {
      registry_set(target, false);
      registry_set(base, true);
      os::unmap(reinterpret_cast<void*>(target), new_map_size);
      uncharge(growth);
      return nullptr;
    }
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
