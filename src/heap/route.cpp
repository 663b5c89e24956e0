// The slow paths: allocation routed by size and alignment to the small, medium and huge
// managers, frees routed by the block's segment kind and owner, realloc and usable size.
// Layer heap.
#include <cerrno>
#include <cstring>

#include "base/bits.h"
#include "chunks/huge.h"
#include "heap/heap_internal.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

namespace {

using chunks::Block;
using chunks::RunMeta;
using source::SegmentHeader;
using source::SegmentKind;

Block* refill_locked(Heap* h, unsigned cls) {
  drain_remote(h);
  if (Block* list = chunks::small_refill_reuse(h->small, cls)) return list;
  // The class needs a new run: first give the heap's empty runs back (other classes'), so
  // the new run takes their memory instead of adding to the footprint. A program's phases
  // move between size classes (Python: a parse makes strings and dicts, a sort tuples and
  // floats); between periodic collections the runs emptied by one phase stayed bound to
  // their class while the next took fresh memory. A collection visits every partial run, so
  // it waits for new runs in proportion to the runs the heap holds (about 1 in 32):
  // amortised, a bounded number of visits per new run, however large the heap.
  size_t due = h->small.segment_count * 2;
  if (due < kNewRunsBeforeCollect) due = kNewRunsBeforeCollect;
  if (h->small.runs_made - h->small.runs_at_collect >= due) {
    collect_locked(h, false);
    if (Block* list = chunks::small_refill_reuse(h->small, cls)) return list;
  }
  return chunks::small_refill_new(h->small, cls);
}

// A list for class cls, the rest of which stays the active run's local_free. The class's
// cells follow its active run, which may have changed (or gone to the partial queue when out
// of memory: a cell left on a partial run would let malloc pop the list a count relies on).
[[gnu::noinline]] Block* refill(Heap* h, unsigned cls) {
  note_event(h);
  Block* list;
  bool grew;
  {
    OwnerSection section(h);
    uint32_t made = h->small.runs_made;
    list = refill_locked(h, cls);
    point_cells(h, cls);
    grew = h->small.runs_made != made;
  }
  if (grew) absorb_pooled(h);  // leaves h's active runs and cells as they are
  return list;
}

// A medium allocation (after a drain of the remote list when `drain`); a heap that took a new
// segment for it may absorb a pooled heap.
void* medium_alloc_owned(Heap* h, size_t size, size_t align, bool drain) {
  void* p;
  bool grew;
  {
    OwnerSection section(h);
    if (drain) drain_remote(h);
    CheckGuard guard(h);
    size_t before = h->medium.segment_count;
    p = chunks::medium_alloc(h->medium, size, align);
    grew = h->medium.segment_count > before;
  }
  if (grew) absorb_pooled(h);
  return p;
}

// The class's malloc list is its active run's local_free list: the fast path pops it, and the
// owner's fast frees into that run push on it.
inline void* small_alloc(Heap* h, unsigned cls) {
  RunMeta* r = h->small.active[cls];
  Block* b = r != nullptr ? chunks::run_local_free(r) : nullptr;
  if (b == nullptr) {
    b = refill(h, cls);
    if (b == nullptr) return nullptr;
    r = h->small.active[cls];
  } else {
    chunks::small_check_block(b);  // slow path only: sizes above the fast path's, or checks on
  }
  chunks::run_local_free(r) = b->next;
  return b;
}

struct Raw {
  void* p;
  bool is_zero;
};

Raw route_alloc(Heap* h, size_t size, size_t align, bool want_zero) {
  if (align <= 16) {
    if (size <= base::kSmallMax) return {small_alloc(h, base::small_class_of(size)), false};
  } else if (align < source::kSegmentSize) {
    // Power-of-two classes are aligned to their size inside a 64 KiB-aligned run.
    size_t rounded = base::next_pow2(size > align ? size : align);
    if (rounded <= base::kSmallMax) return {small_alloc(h, base::small_class_of(rounded)), false};
  } else {
    return {chunks::huge_alloc_overaligned(size, align, h->huge_place), true};
  }
  if (size <= chunks::kMediumMax) return {medium_alloc_owned(h, size, align, true), false};
  // A program that freed many small blocks and now asks for big ones: give the empty runs
  // back first, so their memory is reused or returned instead of adding to the peak.
  if (h->events >= kCollectBeforeHuge) collect(h, false);
  chunks::HugeResult r = chunks::huge_alloc(size, align, want_zero, h->huge_place);
  return {r.p, r.is_zero};
}

}  // namespace

void* alloc_raw(Heap* h, size_t size, size_t align, bool zero) {
  Raw r = route_alloc(h, size, align, zero);
  if (zero && r.p != nullptr && !r.is_zero) std::memset(r.p, 0, size);
  return r.p;
}

namespace {

// The owner's free of a small block the fast path did not take (a full run, checks on).
[[gnu::noinline]] void free_small_own(Heap* owner, void* p) {
  RunMeta* r = chunks::run_of(p);
  bool was_full;
  {
    OwnerSection section(owner);
    was_full = r->state == chunks::kRunFull;
    chunks::small_free_local(owner->small, r, static_cast<Block*>(p));
  }
  if (was_full) note_event(owner);
}

[[gnu::noinline]] void free_not_small(SegmentHeader* seg, void* p) {
  switch (seg->kind) {
    case SegmentKind::kMedium: {
      Heap* owner = static_cast<Heap*>(source::segment_owner(seg));
      if (owner == t_heap) {
        {
          OwnerSection section(owner);
          CheckGuard guard(owner);
          chunks::medium_free(owner->medium, p);
        }
        note_event(owner);
      } else {
        remote_free_medium(owner, p);
      }
      return;
    }
    case SegmentKind::kHuge:
      chunks::huge_free(seg);
      if (t_heap != &g_empty_heap) note_event(t_heap);
      ensure_background();  // the cache may just have passed the floor (auto mode)
      return;
    case SegmentKind::kSmall:  // free_raw's
    case SegmentKind::kNone:
      return;
  }
}

}  // namespace

// Small blocks first, with no register saves on their way: a free that reaches here is most
// often a remote free of a small block (consumer threads), or an own free into a full run.
void free_raw(void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) == 0) {
    if (p != nullptr) chunks::huge_free_overaligned(p);
    return;
  }
  SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
  if (seg->kind != SegmentKind::kSmall) return free_not_small(seg, p);
  Heap* owner = static_cast<Heap*>(source::segment_owner(seg));
  if (owner != t_heap) return remote_free_small(owner, p);
  free_small_own(owner, p);
}

size_t usable_raw(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) == 0) return p == nullptr ? 0 : chunks::huge_usable_overaligned(p);
  const SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
  switch (seg->kind) {
    case SegmentKind::kSmall: return chunks::run_of(p)->block_size;
    case SegmentKind::kMedium: return chunks::medium_usable(p);
    case SegmentKind::kHuge: return chunks::huge_usable(seg);
    case SegmentKind::kNone: return 0;
  }
  return 0;
}

// ---------------------------------------------------------------- entry points

void* malloc_slow(size_t size) {
  Heap* h = t_heap;
  // The common miss: the active run's list ran dry and the run has an untouched part left.
  // Carve a batch without the general machinery (drains and collections happen when it has
  // none, or when other threads have freed blocks to us).
  if (h->remote.empty() && !checking()) {
    if (size <= base::kSmallMax) {
      unsigned cls = base::small_class_of(size);
      RunMeta* r = h->small.active[cls];
      if (r != nullptr) {
        if (Block* b = chunks::small_take_local(r)) {
          chunks::run_local_free(r) = b->next;
          return b;
        }
      }
    } else if (size <= chunks::kMediumMax && h != &g_empty_heap) {
      // Likewise a medium request: straight to the heap's medium chunks (route_alloc's way
      // without its dispatch; the empty heap has none and goes on to get a heap first).
      if (void* p = medium_alloc_owned(h, size, 16, false)) return p;
    }
  }
  h = current_heap();
  void* p = nullptr;
  if (h != nullptr) {
    if (checking()) p = allocate(size, 16, false);
    else if (size <= base::kSmallMax) p = small_alloc(h, base::small_class_of(size));
    else if (size <= PTRDIFF_MAX) p = alloc_raw(h, size, 16, false);
  }
  if (p == nullptr) errno = ENOMEM;
  return p;
}

void free_slow(void* p) { deallocate(p, "free"); }
void free_unchecked(void* p) { free_fast(p); }

void* allocate(size_t size, size_t align, bool zero) {
  if (size > PTRDIFF_MAX - kCheckExtra) return nullptr;
  if (checking()) return allocate_checked(size, align, zero);
  Heap* h = current_heap();
  return h != nullptr ? alloc_raw(h, size, align, zero) : nullptr;
}

void deallocate(void* p, const char* call) {
  if (p == nullptr) return;
  if (checking()) return deallocate_checked(p, call);
  free_raw(p);
}

size_t usable_size(const void* p) {
  if (p == nullptr) return 0;
  return checking() ? usable_checked(p, "malloc_usable_size") : usable_raw(p);
}

namespace {

// Every resize that reallocate's inline check does not keep as it is.
[[gnu::noinline]] void* reallocate_slow(void* p, size_t size) {
  if (p == nullptr) return allocate(size, 16, false);
  if (size > PTRDIFF_MAX - kCheckExtra) return nullptr;
  size_t old_usable;
  if (checking()) {
    old_usable = realloc_size_checked(p);
    if (old_usable == kNotABlock) return nullptr;
  } else {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if ((a & source::kSegmentMask) != 0) {
      SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
      switch (seg->kind) {
        case SegmentKind::kSmall:  // reallocate found that it does not fit
          break;
        case SegmentKind::kMedium:
          if (Heap* owner = t_heap; size > base::kSmallMax && size <= chunks::kMediumMax &&
                                    source::segment_owner(seg) == owner) {
            OwnerSection section(owner);
            if (chunks::medium_resize_in_place(owner->medium, p, size)) return p;
          }
          break;
        case SegmentKind::kHuge:
          if (size > chunks::kMediumMax) {
            void* q = chunks::huge_resize(seg, size);
            if (q != nullptr) return q;
            // mremap could not (e.g. the block spans two kernel mappings): copy instead.
          }
          break;
        case SegmentKind::kNone:
          break;
      }
    }
    old_usable = usable_raw(p);
  }
  void* q = allocate(size, 16, false);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_usable < size ? old_usable : size);
  deallocate(p, "realloc");
  return q;
}

}  // namespace

void* reallocate(void* p, size_t size) {
  // The common case of a program growing a string or an array by small steps: the block
  // still fits (a small block not less than half used, a medium chunk with its headroom, a
  // huge block whose mapping holds the growth) and stays. Checked here, without the frame of
  // the general path (five registers saved and restored).
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) != 0 && !checking()) {
    SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
    if (seg->kind == SegmentKind::kSmall) {
      size_t bs = chunks::run_of(p)->block_size;
      if (size <= bs && (size > bs / 2 || bs <= 16)) return p;
    } else if (seg->kind == SegmentKind::kMedium) {
      if (size > base::kSmallMax && size <= chunks::kMediumMax &&
          chunks::medium_fits_as_is(p, size)) {
        return p;
      }
    } else if (seg->kind == SegmentKind::kHuge) {
      if (chunks::huge_grow_in_place(seg, size)) return p;
    }
  }
  return reallocate_slow(p, size);
}

bool check_enabled() { return checking(); }

HeapStats stats() {
  // Batches other threads hold are not seen; the caller's own are.
  return {g_heap_count.load(std::memory_order_relaxed),
          g_remote_frees.load(std::memory_order_relaxed) + remote_pending()};
}

}  // namespace mpcalloc::heap
