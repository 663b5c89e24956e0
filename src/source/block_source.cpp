// Segment and huge-block source: OS mappings, the budgeted cache with decay, the registry.
#include "source/block_source.h"

#include <atomic>
#include <cstring>

#include "base/bits.h"
#include "base/intrusive_list.h"
#include "base/spinlock.h"
#include "os/os_env.h"
#include "os/os_memory.h"

namespace mpcalloc::source {
namespace {

constexpr unsigned kAddressBits = 47;
constexpr size_t kRegistryWords = (size_t{1} << (kAddressBits - kSegmentShift)) / 64;

constinit base::SpinLock g_lock;
constinit base::IntrusiveList<SegmentHeader> g_segment_cache;
constinit base::IntrusiveList<SegmentHeader> g_huge_cache;
constinit size_t g_cached_bytes = 0;
// Free segments in the cache whose pages are still resident. Beyond kDirtySegmentsKept, a
// freed segment's pages are given back (MADV_DONTNEED) as it enters the cache: the mapping
// stays for cheap reuse, the RSS goes.
constexpr size_t kDirtySegmentsKept = 2;
constinit size_t g_dirty_segments = 0;
constinit SourceConfig g_config{size_t{256} << 20, 1000};

std::atomic<std::atomic<uint64_t>*> g_registry{nullptr};
std::atomic<size_t> g_mapped{0}, g_peak{0}, g_segments{0}, g_huge_count{0}, g_huge_bytes{0};
std::atomic<uint64_t> g_last_decay_ms{0};

std::atomic<uint64_t>* registry() {
  std::atomic<uint64_t>* r = g_registry.load(std::memory_order_acquire);
  if (r != nullptr) return r;
  void* m = os::map(kRegistryWords * sizeof(uint64_t));
  if (m == nullptr) return nullptr;
  std::atomic<uint64_t>* expected = nullptr;
  if (!g_registry.compare_exchange_strong(expected, static_cast<std::atomic<uint64_t>*>(m))) {
    os::unmap(m, kRegistryWords * sizeof(uint64_t));
    return expected;
  }
  return static_cast<std::atomic<uint64_t>*>(m);
}

void set_registered(uintptr_t base, bool on) {
  std::atomic<uint64_t>* r = registry();
  if (r == nullptr) return;
  size_t bit = base >> kSegmentShift;
  if (bit >= kRegistryWords * 64) return;
  uint64_t mask = uint64_t{1} << (bit % 64);
  if (on) r[bit / 64].fetch_or(mask, std::memory_order_release);
  else r[bit / 64].fetch_and(~mask, std::memory_order_release);
}

void account_map(size_t bytes) {
  size_t now = g_mapped.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  size_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
void account_unmap(size_t bytes) { g_mapped.fetch_sub(bytes, std::memory_order_relaxed); }

// Unmaps a block that is no longer in any list.
void unmap_block(SegmentHeader* seg) {
  uintptr_t base = segment_base(seg);
  size_t size = seg->map_size;
  set_registered(base, false);
  if (seg->is_segment) g_segments.fetch_sub(1, std::memory_order_relaxed);
  os::unmap(reinterpret_cast<void*>(base), size);
  account_unmap(size);
}

// Caller holds g_lock. Moves blocks out of the cache until it fits `budget`, oldest first, or
// (when max_age_ms != 0) every block older than max_age_ms. Returns a chain to unmap outside
// the lock.
SegmentHeader* evict_locked(size_t budget, uint64_t max_age_ms, uint64_t now) {
  SegmentHeader* out = nullptr;
  for (base::IntrusiveList<SegmentHeader>* list : {&g_huge_cache, &g_segment_cache}) {
    // The list is newest first: walk to the tail and evict from there.
    SegmentHeader* tail = list->head;
    while (tail != nullptr && tail->next != nullptr) tail = tail->next;
    while (tail != nullptr) {
      SegmentHeader* prev = tail->prev;
      bool too_old = max_age_ms != 0 && now - tail->cached_at_ms >= max_age_ms;
      if (!too_old && g_cached_bytes <= budget) break;
      list->remove(tail);
      g_cached_bytes -= tail->map_size;
      if (list == &g_segment_cache && !tail->is_zero) --g_dirty_segments;
      tail->next = out;
      out = tail;
      tail = prev;
    }
  }
  return out;
}

void unmap_chain(SegmentHeader* chain) {
  while (chain != nullptr) {
    SegmentHeader* next = chain->next;
    unmap_block(chain);
    chain = next;
  }
}

void init_header(SegmentHeader* seg, SegmentKind kind, void* owner, size_t map_size, bool zero) {
  seg->magic = kSegmentMagic;
  seg->kind = kind;
  seg->node = 0;
  seg->map_size = map_size;
  seg->owner = owner;
  seg->next = seg->prev = nullptr;
  seg->cached_at_ms = 0;
  seg->is_zero = zero;
  seg->is_segment = kind == SegmentKind::kSmall || kind == SegmentKind::kMedium;
}

// Caller holds g_lock. Merges a free huge block with cached blocks right before and after it
// in the address space (pieces of one earlier split, or mappings that happen to touch), so a
// large request can take them back whole. Returns the merged block (not in the list).
SegmentHeader* merge_neighbours_locked(SegmentHeader* seg) {
  for (SegmentHeader* s = g_huge_cache.head; s != nullptr;) {
    SegmentHeader* next = s->next;
    uintptr_t sb = segment_base(s);
    uintptr_t b = segment_base(seg);
    if (sb == b + seg->map_size) {  // right neighbour
      g_huge_cache.remove(s);
      g_cached_bytes -= s->map_size;
      seg->map_size += s->map_size;
      seg->is_zero = seg->is_zero && s->is_zero;
      set_registered(sb, false);
      next = g_huge_cache.head;  // restart: the merged block may now touch another one
    } else if (sb + s->map_size == b) {  // left neighbour
      g_huge_cache.remove(s);
      g_cached_bytes -= s->map_size;
      s->map_size += seg->map_size;
      s->is_zero = s->is_zero && seg->is_zero;
      s->cached_at_ms = seg->cached_at_ms;
      set_registered(b, false);
      seg = s;
      next = g_huge_cache.head;
    }
    s = next;
  }
  return seg;
}

// Caches a free block (or unmaps it when the budget is 0 or it alone exceeds the budget).
void cache_or_unmap(SegmentHeader* seg, base::IntrusiveList<SegmentHeader>& list) {
  seg->kind = SegmentKind::kNone;
  seg->owner = nullptr;
  uint64_t now = os::now_ms();
  SegmentHeader* evicted = nullptr;
  {
    base::LockGuard guard(g_lock);
    if (seg->map_size <= g_config.cache_max_bytes) {
      seg->cached_at_ms = now;
      if (&list == &g_huge_cache) seg = merge_neighbours_locked(seg);
      else if (!seg->is_zero) ++g_dirty_segments;
      list.push_front(seg);
      g_cached_bytes += seg->map_size;
      evicted = evict_locked(g_config.cache_max_bytes, g_config.decay_ms, now);
      seg = nullptr;
    }
  }
  unmap_chain(evicted);
  if (seg != nullptr) unmap_block(seg);
}

}  // namespace

void configure(const SourceConfig& cfg) {
  base::LockGuard guard(g_lock);
  g_config = cfg;
}

SegmentHeader* acquire_segment(SegmentKind kind, void* owner) {
  SegmentHeader* seg;
  {
    base::LockGuard guard(g_lock);
    seg = g_segment_cache.pop_front();
    if (seg != nullptr) {
      g_cached_bytes -= seg->map_size;
      if (!seg->is_zero) --g_dirty_segments;
    }
  }
  if (seg != nullptr) {
    std::memset(reinterpret_cast<void*>(segment_base(seg)), 0, kRunTableBytes);
    init_header(seg, kind, owner, kSegmentSize, seg->is_zero);
    return seg;
  }
  os::MapResult m = os::map_aligned(kSegmentSize, kSegmentSize);
  if (m.addr == nullptr) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(m.addr);
  seg = segment_header(base);
  init_header(seg, kind, owner, kSegmentSize, true);
  account_map(kSegmentSize);
  g_segments.fetch_add(1, std::memory_order_relaxed);
  set_registered(base, true);
  return seg;
}

void release_segment(SegmentHeader* seg) {
  seg->is_zero = false;
  size_t dirty;
  {
    base::LockGuard guard(g_lock);
    dirty = g_dirty_segments;
  }
  if (dirty >= kDirtySegmentsKept && g_config.cache_max_bytes >= kSegmentSize) {
    uintptr_t base = segment_base(seg);
    size_t keep = base::align_up(kRunTableBytes + sizeof(SegmentHeader), os::kPageSize);
    if (os::discard(reinterpret_cast<void*>(base + keep), kSegmentSize - keep)) seg->is_zero = true;
  }
  cache_or_unmap(seg, g_segment_cache);
}

SegmentHeader* acquire_huge(size_t map_size, bool want_zero) {
  map_size = base::align_up(map_size, os::kPageSize);
  size_t split_at = base::align_up(map_size, kSegmentSize);
  SegmentHeader* found = nullptr;
  {
    base::LockGuard guard(g_lock);
    // Best fit among the blocks at least as large; otherwise the largest smaller one, which
    // mremap grows (its resident pages are reused, no copy).
    SegmentHeader* best = nullptr;
    SegmentHeader* largest_smaller = nullptr;
    for (SegmentHeader* s = g_huge_cache.head; s != nullptr; s = s->next) {
      if (s->map_size >= map_size) {
        if (best == nullptr || s->map_size < best->map_size) best = s;
      } else if (largest_smaller == nullptr || s->map_size > largest_smaller->map_size) {
        largest_smaller = s;
      }
    }
    found = best != nullptr ? best : largest_smaller;
    if (found != nullptr) {
      g_huge_cache.remove(found);
      g_cached_bytes -= found->map_size;
      // A much larger block is split at a segment boundary: the tail stays cached, resident,
      // and merges back when the front is freed. No syscall, no page fault.
      if (found->map_size >= split_at + kSegmentSize) {
        uintptr_t tail_base = segment_base(found) + split_at;
        SegmentHeader* tail = segment_header(tail_base);
        init_header(tail, SegmentKind::kNone, nullptr, found->map_size - split_at, found->is_zero);
        tail->cached_at_ms = found->cached_at_ms;
        set_registered(tail_base, true);
        g_huge_cache.push_front(tail);
        g_cached_bytes += tail->map_size;
        found->map_size = split_at;
      }
    }
  }
  if (found != nullptr) {
    size_t old_size = found->map_size;
    bool zero = found->is_zero;
    if (want_zero && !zero) {
      // Reuse the address range but drop its pages: they come back as zero on first touch.
      uintptr_t base = segment_base(found);
      size_t header_end = kRunTableBytes + sizeof(SegmentHeader);
      size_t keep = base::align_up(header_end, os::kPageSize);
      if (old_size > keep && os::discard(reinterpret_cast<void*>(base + keep), old_size - keep)) {
        // The page holding the header stays; clear the rest of it (user data may start there).
        std::memset(reinterpret_cast<void*>(base + header_end), 0, keep - header_end);
        zero = true;
      }
    }
    SegmentHeader* seg = found;
    if (old_size < map_size) {
      seg = resize_huge(found, map_size);
      // Could not grow it: give it back and fall through to a fresh mapping.
      if (seg == nullptr) cache_or_unmap(found, g_huge_cache);
    }
    if (seg != nullptr) {
      g_huge_count.fetch_add(1, std::memory_order_relaxed);
      g_huge_bytes.fetch_add(seg->map_size, std::memory_order_relaxed);
      init_header(seg, SegmentKind::kHuge, nullptr, seg->map_size, zero);
      return seg;
    }
  }
  os::MapResult m = os::map_aligned(map_size, kSegmentSize);
  if (m.addr == nullptr) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(m.addr);
  SegmentHeader* seg = segment_header(base);
  init_header(seg, SegmentKind::kHuge, nullptr, map_size, true);
  account_map(map_size);
  set_registered(base, true);
  g_huge_count.fetch_add(1, std::memory_order_relaxed);
  g_huge_bytes.fetch_add(map_size, std::memory_order_relaxed);
  return seg;
}

void release_huge(SegmentHeader* seg) {
  g_huge_count.fetch_sub(1, std::memory_order_relaxed);
  g_huge_bytes.fetch_sub(seg->map_size, std::memory_order_relaxed);
  seg->is_zero = false;
  cache_or_unmap(seg, g_huge_cache);
}

SegmentHeader* resize_huge(SegmentHeader* seg, size_t new_map_size) {
  new_map_size = base::align_up(new_map_size, os::kPageSize);
  uintptr_t base = segment_base(seg);
  size_t old_size = seg->map_size;
  if (new_map_size == old_size) return seg;
  bool counted = seg->kind == SegmentKind::kHuge;
  if (os::remap_in_place(reinterpret_cast<void*>(base), old_size, new_map_size)) {
    seg->map_size = new_map_size;
  } else {
    if (new_map_size < old_size) return nullptr;
    // Move to a fresh aligned range: reserve it, then mremap onto it (pages move, no copy).
    size_t over = new_map_size + kSegmentSize;
    void* r = os::reserve(over);
    if (r == nullptr) return nullptr;
    uintptr_t rs = reinterpret_cast<uintptr_t>(r);
    uintptr_t target = base::align_up(rs, kSegmentSize);
    // The old range is free for the kernel to hand out (to another thread's new segment) the
    // moment mremap returns: its registration goes first, or it would be cleared afterwards
    // under that segment's feet.
    set_registered(base, false);
    if (!os::remap_to(reinterpret_cast<void*>(base), old_size, new_map_size,
                      reinterpret_cast<void*>(target))) {
      set_registered(base, true);
      os::unmap(r, over);
      return nullptr;
    }
    set_registered(target, true);
    os::unmap(r, target - rs);
    os::unmap(reinterpret_cast<void*>(target + new_map_size), rs + over - (target + new_map_size));
    seg = segment_header(target);
    seg->map_size = new_map_size;
  }
  if (new_map_size > old_size) account_map(new_map_size - old_size);
  else account_unmap(old_size - new_map_size);
  if (counted) {
    g_huge_bytes.fetch_add(new_map_size, std::memory_order_relaxed);
    g_huge_bytes.fetch_sub(old_size, std::memory_order_relaxed);
  }
  return seg;
}

void* map_overaligned(size_t map_size, size_t align) {
  os::MapResult m = os::map_aligned(map_size, align);
  if (m.addr == nullptr) return nullptr;
  account_map(map_size);
  g_huge_count.fetch_add(1, std::memory_order_relaxed);
  g_huge_bytes.fetch_add(map_size, std::memory_order_relaxed);
  return m.addr;
}

void unmap_overaligned(void* p, size_t map_size) {
  os::unmap(p, map_size);
  account_unmap(map_size);
  g_huge_count.fetch_sub(1, std::memory_order_relaxed);
  g_huge_bytes.fetch_sub(map_size, std::memory_order_relaxed);
}

bool is_registered(uintptr_t base) {
  std::atomic<uint64_t>* r = g_registry.load(std::memory_order_acquire);
  if (r == nullptr) return false;
  size_t bit = base >> kSegmentShift;
  if (bit >= kRegistryWords * 64) return false;
  return (r[bit / 64].load(std::memory_order_acquire) >> (bit % 64)) & 1;
}

size_t trim_cache() {
  SegmentHeader* chain;
  size_t before;
  {
    base::LockGuard guard(g_lock);
    before = g_cached_bytes;
    chain = evict_locked(0, 0, 0);
  }
  unmap_chain(chain);
  return before;
}

void decay_tick() {
  uint64_t now = os::now_ms();
  uint64_t last = g_last_decay_ms.load(std::memory_order_relaxed);
  if (now - last < 100 || !g_last_decay_ms.compare_exchange_strong(last, now)) return;
  SegmentHeader* chain;
  {
    base::LockGuard guard(g_lock);
    if (g_cached_bytes == 0) return;
    chain = evict_locked(g_config.cache_max_bytes, g_config.decay_ms, now);
  }
  unmap_chain(chain);
}

SourceStats stats() {
  SourceStats s;
  s.mapped_bytes = g_mapped.load(std::memory_order_relaxed);
  s.peak_mapped_bytes = g_peak.load(std::memory_order_relaxed);
  s.segment_count = g_segments.load(std::memory_order_relaxed);
  s.huge_count = g_huge_count.load(std::memory_order_relaxed);
  s.huge_bytes = g_huge_bytes.load(std::memory_order_relaxed);
  {
    base::LockGuard guard(g_lock);
    s.cached_bytes = g_cached_bytes;
  }
  return s;
}

void fork_prepare() { g_lock.lock(); }
void fork_parent() { g_lock.unlock(); }
void fork_child() { g_lock.reset(); }

}  // namespace mpcalloc::source
