// The places' caches of free blocks: budget, decay, huge-block best fit with split and merge,
// accounting and statistics. Layer source.
#include <atomic>
#include <cstring>

#include "base/bits.h"
#include "base/options.h"
#include "os/os_env.h"
#include "os/os_memory.h"
#include "os/os_numa.h"
#include "source/block_source.h"
#include "source/mappings.h"
#include "source/place.h"
#include "source/registry.h"

namespace mpcalloc::source {
namespace {

constinit Place g_places[kPlaces] = {};
// Places that ever held memory: trim, decay and stats visit only these.
constinit std::atomic<bool> g_place_used[kPlaces] = {};
std::atomic<size_t> g_cache_max{size_t{256} << 20};
std::atomic<uint64_t> g_decay_ms{1000};
std::atomic<size_t> g_total_mapped{0}, g_peak_mapped{0}, g_mem_limit{0};
std::atomic<uint64_t> g_limit_hits{0};
std::atomic<int> g_thp{0};
std::atomic<bool> g_past_floor{false};  // set once: some place cached more than the floor
std::atomic<uint64_t> g_last_decay_ms{0};
constinit NumaConfig g_numa{false, false, 1};
std::atomic<uint32_t> g_mapping_ids{0};

// Caller holds pl.lock. Takes blocks out of the cache until it fits `budget`, oldest first,
// and (max_age_ms != 0) every block older than max_age_ms. Returns them as a chain.
SegmentHeader* evict_locked(Place& pl, size_t budget, uint64_t max_age_ms, uint64_t now) {
  SegmentHeader* out = nullptr;
  for (base::IntrusiveList<SegmentHeader>* list : {&pl.huge, &pl.segments}) {
    while (SegmentHeader* oldest = list->tail) {
      if (!decayed(oldest->cached_at_ms, now, max_age_ms) && pl.cached_bytes <= budget) break;
      list->remove(oldest);
      pl.cached_bytes -= oldest->map_size;
      if (list == &pl.segments && !oldest->is_zero) --pl.dirty_segments;
      oldest->next = out;
      out = oldest;
    }
  }
  return out;
}

// Caller holds pl.lock. Takes a cached huge block out of the cache.
void remove_huge_locked(Place& pl, SegmentHeader* s) {
  pl.huge.remove(s);
  pl.cached_bytes -= s->map_size;
}

// Caller holds pl.lock. Merges a free huge block with cached blocks right before and after it
// in the address space (pieces of one earlier split, or mappings that happen to touch), so a
// large request can take them back whole. Returns the merged block (not in the list).
SegmentHeader* merge_neighbours_locked(Place& pl, SegmentHeader* seg) {
  for (SegmentHeader* s = pl.huge.head; s != nullptr;) {
    SegmentHeader* next = s->next;
    uintptr_t sb = segment_base(s);
    uintptr_t b = segment_base(seg);
    // Neighbours whose mappings would not fit one block's records stay apart.
    if (sb == b + seg->map_size && mappings_append(seg, s, seg->map_size)) {  // right neighbour
      remove_huge_locked(pl, s);
      seg->map_size += s->map_size;
      seg->is_zero = seg->is_zero && s->is_zero;
      registry_set(sb, false);
      next = pl.huge.head;  // restart: the merged block may now touch another one
    } else if (sb + s->map_size == b && mappings_append(s, seg, s->map_size)) {  // left neighbour
      remove_huge_locked(pl, s);
      s->map_size += seg->map_size;
      s->is_zero = s->is_zero && seg->is_zero;
      s->cached_at_ms = seg->cached_at_ms;
      registry_set(b, false);
      seg = s;
      next = pl.huge.head;
    }
    s = next;
  }
  return seg;
}

constexpr size_t kPeakSlackDivisor = 8;

// Caller holds pl.lock. Moves the peak windows along and returns how many free bytes the
// place may keep cached now: what it had in use at its recent peak beyond what is in use now,
// and at least the cache_max budget.
size_t allowance_locked(Place& pl, uint64_t now) {
  size_t in_use = pl.mapped_bytes - pl.cached_bytes;
  uint64_t window = g_decay_ms.load(std::memory_order_relaxed);
  if (window != 0 && now > pl.window_start_ms && now - pl.window_start_ms >= window) {
    pl.peak_before = now - pl.window_start_ms >= 2 * window ? in_use : pl.peak_now;
    pl.peak_now = in_use;
    pl.window_start_ms = now;
  }
  if (in_use > pl.peak_now) pl.peak_now = in_use;
  size_t peak = pl.peak_now > pl.peak_before ? pl.peak_now : pl.peak_before;
  // Slack for a working set that changes from round to round: a round a little larger than
  // the last one finds its memory cached (solver_loop, cached pieces joined: 78k page faults
  // without it, 73k with 1/8, at the same peak RSS; before joins existed, 226k and 93k).
  peak += peak / kPeakSlackDivisor;
  size_t floor = g_cache_max.load(std::memory_order_relaxed);
  if (floor == 0) return 0;  // no cache at all: every free goes back at once
  return peak > in_use && peak - in_use > floor ? peak - in_use : floor;
}

// Unmaps every cached block of every place (the memory limit needs room).
void empty_all_caches() { trim_cache(); }

}  // namespace

Place& place_of(int place) { return g_places[place]; }

uint32_t new_mapping_id() {
  uint32_t id;
  do {
    id = g_mapping_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  } while (id == 0);
  return id;
}

size_t cache_budget() { return g_cache_max.load(std::memory_order_relaxed); }
uint64_t decay_ms() { return g_decay_ms.load(std::memory_order_relaxed); }

void configure(const SourceConfig& cfg) {
  g_cache_max.store(cfg.cache_max_bytes, std::memory_order_relaxed);
  g_decay_ms.store(cfg.decay_ms, std::memory_order_relaxed);
  g_mem_limit.store(cfg.mem_limit_bytes, std::memory_order_relaxed);
  g_thp.store(cfg.thp, std::memory_order_relaxed);
}

namespace {
bool try_charge(size_t bytes) {
  size_t limit = g_mem_limit.load(std::memory_order_relaxed);
  size_t total = g_total_mapped.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && (total + bytes > limit || total + bytes < total)) return false;
  } while (!g_total_mapped.compare_exchange_weak(total, total + bytes, std::memory_order_relaxed));
  size_t now = total + bytes;
  size_t peak = g_peak_mapped.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_mapped.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  return true;
}
}  // namespace

bool charge(size_t bytes) {
  if (try_charge(bytes)) return true;
  // Past the limit: cached memory goes first, then the mapping is refused.
  empty_all_caches();
  if (try_charge(bytes)) return true;
  g_limit_hits.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void uncharge(size_t bytes) { g_total_mapped.fetch_sub(bytes, std::memory_order_relaxed); }

bool zero_past_header(SegmentHeader* seg) {
  uintptr_t base = segment_base(seg);
  size_t header_end = kRunTableBytes + sizeof(SegmentHeader);
  size_t keep = base::align_up(header_end, os::page_size());
  if (seg->map_size > keep && !os::discard(reinterpret_cast<void*>(base + keep), seg->map_size - keep)) {
    return false;
  }
  std::memset(reinterpret_cast<void*>(base + header_end), 0, keep - header_end);
  return true;
}

void init_header(SegmentHeader* seg, SegmentKind kind, void* owner, size_t map_size, bool zero) {
  seg->magic = kSegmentMagic;
  seg->kind = kind;
  seg->map_size = map_size;
  seg->owner = owner;
  seg->next = seg->prev = nullptr;
  seg->cached_at_ms = 0;
  seg->is_zero = zero;
  seg->is_segment = kind == SegmentKind::kSmall || kind == SegmentKind::kMedium;
}

void configure_numa(const NumaConfig& cfg) { g_numa = cfg; }

bool bind_to(void* addr, size_t size, int place, bool move) {
  if (place == kPlaceInterleaved) {
    return os::numa_bind(addr, size, os::MemPolicy::kInterleave, g_numa.memory_mask, move);
  }
  return os::numa_bind(addr, size, g_numa.strict ? os::MemPolicy::kBind : os::MemPolicy::kPreferred,
                       uint64_t{1} << place, move);
}

void bind_fresh(void* addr, size_t size, int place) {
  // A failure leaves first-touch placement: still memory, so not an allocation failure.
  if (g_numa.active && place != kPlaceAny) bind_to(addr, size, place, false);
}

void prepare_fresh(void* addr, size_t size, int place, bool segment) {
  bind_fresh(addr, size, place);
  // Huge-page advice before the first touch (madvise mode: huge blocks only).
  int thp = g_thp.load(std::memory_order_relaxed);
  if (thp == base::kThpNever || thp == base::kThpAlways || (thp == base::kThpMadvise && !segment)) {
    os::advise_huge_pages(addr, size, thp != base::kThpNever);
  }
}

void* map_fresh(size_t size, size_t align, int place, bool segment) {
  if (!charge(size)) return nullptr;
  os::MapResult m = os::map_aligned(size, align);
  if (m.addr == nullptr) {
    uncharge(size);
    return nullptr;
  }
  prepare_fresh(m.addr, size, place, segment);
  return m.addr;
}

SegmentHeader* map_block(size_t size, int place, bool segment) {
  void* addr = map_fresh(size, kSegmentSize, place, segment);
  if (addr == nullptr) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(addr);
  if (!registry_set(base, true)) {
    os::unmap(addr, size);
    uncharge(size);
    return nullptr;
  }
  SegmentHeader* seg = segment_header(base);
  init_header(seg, SegmentKind::kNone, nullptr, size, true);
  mappings_fresh(seg);
  seg->is_segment = segment;
  seg->node = place;
  g_place_used[place].store(true, std::memory_order_relaxed);
  Place& pl = g_places[place];
  SegmentHeader* evicted;
  {
    base::LockGuard guard(pl.lock);
    pl.mapped_bytes += size;
    if (segment) ++pl.segment_count;
    // More in use means less room to cache: blocks past the allowance go now.
    uint64_t now = os::now_ms();
    evicted = evict_locked(pl, allowance_locked(pl, now), decay_ms(), now);
  }
  unmap_chain(evicted);
  return seg;
}

void account_resize(Place& pl, long delta, bool huge) {
  g_place_used[&pl - g_places].store(true, std::memory_order_relaxed);
  base::LockGuard guard(pl.lock);
  pl.mapped_bytes += static_cast<size_t>(delta);
  if (huge) pl.huge_bytes += static_cast<size_t>(delta);
  allowance_locked(pl, os::now_ms());  // the peak follows
}

void account_huge(Place& pl, int delta_count, size_t bytes) {
  base::LockGuard guard(pl.lock);
  if (delta_count > 0) {
    ++pl.huge_count;
    pl.huge_bytes += bytes;
  } else {
    --pl.huge_count;
    pl.huge_bytes -= bytes;
  }
}

SegmentHeader* cache_take_segment(Place& pl) {
  base::LockGuard guard(pl.lock);
  SegmentHeader* seg = pl.segments.pop_front();
  if (seg != nullptr) {
    pl.cached_bytes -= seg->map_size;
    if (!seg->is_zero) --pl.dirty_segments;
    allowance_locked(pl, os::now_ms());  // the peak follows
  }
  return seg;
}

void account_segment_use(Place& pl, SegmentKind kind, int delta) {
  base::LockGuard guard(pl.lock);
  size_t& n = kind == SegmentKind::kSmall ? pl.small_segments : pl.medium_segments;
  n += static_cast<size_t>(static_cast<long>(delta));
}

size_t cache_dirty_segments(Place& pl) {
  base::LockGuard guard(pl.lock);
  return pl.dirty_segments;
}

namespace {
// Caller holds pl.lock: the smallest cached huge block of at least map_size bytes, or nullptr.
SegmentHeader* best_fit_locked(Place& pl, size_t map_size) {
  SegmentHeader* best = nullptr;
  for (SegmentHeader* s = pl.huge.head; s != nullptr; s = s->next) {
    if (s->map_size >= map_size && (best == nullptr || s->map_size < best->map_size)) best = s;
  }
  return best;
}

// Caller holds pl.lock. A block taken for `need` bytes and much larger is split at a segment
// boundary: the tail stays cached, resident, and merges back when the front is freed. No
// syscall, no page fault. (Its registration cannot fail: the bit's leaf was mapped for the
// block it was part of.)
void split_huge_locked(Place& pl, SegmentHeader* s, size_t need) {
  size_t split_at = base::align_up(need, kSegmentSize);
  if (s->map_size < split_at + kSegmentSize) return;
  uintptr_t tail_base = segment_base(s) + split_at;
  SegmentHeader* tail = segment_header(tail_base);
  init_header(tail, SegmentKind::kNone, nullptr, s->map_size - split_at, s->is_zero);
  mappings_split(s, tail, split_at);
  tail->node = s->node;
  tail->cached_at_ms = s->cached_at_ms;
  registry_set(tail_base, true);
  pl.huge.push_front(tail);
  pl.cached_bytes += tail->map_size;
  s->map_size = split_at;
}
}  // namespace

SegmentHeader* take_foreign(int place, size_t map_size, bool huge) {
  if (!g_numa.active || g_numa.strict) return nullptr;
  for (int i = 0; i < kPlaces; ++i) {
    if (i == place || !g_place_used[i].load(std::memory_order_relaxed)) continue;
    Place& other = g_places[i];
    SegmentHeader* seg = nullptr;
    if (!huge) {
      seg = cache_take_segment(other);
    } else {
      base::LockGuard guard(other.lock);
      seg = best_fit_locked(other, map_size);
      if (seg != nullptr) remove_huge_locked(other, seg);
    }
    if (seg != nullptr) {
      g_place_used[place].store(true, std::memory_order_relaxed);
      base::LockGuard guard(g_places[place].lock);
      g_places[place].foreign_bytes += seg->map_size;
      return seg;
    }
  }
  return nullptr;
}

SegmentHeader* cache_take_huge(Place& pl, size_t map_size) {
  base::LockGuard guard(pl.lock);
  SegmentHeader* best = best_fit_locked(pl, map_size);
  SegmentHeader* chain = nullptr;
  if (best != nullptr) {
    remove_huge_locked(pl, best);
    split_huge_locked(pl, best, map_size);
    best->next = nullptr;
    chain = best;
  } else {
    // None is: the largest ones, largest first, until they cover the request or the cache is
    // empty, for the caller to join into one block (what they do not cover is mapped fresh;
    // of the last, only the tail the request still needs).
    // The block's mapping records must hold theirs and one for the fresh part.
    SegmentHeader** tail = &chain;
    int room = kMaxMappings - 1;
    for (size_t covered = 0; covered < map_size;) {
      SegmentHeader* largest = nullptr;
      for (SegmentHeader* s = pl.huge.head; s != nullptr; s = s->next) {
        if (s->mappings <= room && (largest == nullptr || s->map_size > largest->map_size)) largest = s;
      }
      if (largest == nullptr) break;
      room -= largest->mappings;
      remove_huge_locked(pl, largest);  // whole: join_pieces cuts the last
      covered += largest->map_size;
      largest->next = nullptr;
      *tail = largest;
      tail = &largest->next;
    }
  }
  if (chain != nullptr) allowance_locked(pl, os::now_ms());  // the peak follows
  return chain;
}

void cache_put(SegmentHeader* seg, bool huge) {
  seg->kind = SegmentKind::kNone;
  seg->owner = nullptr;
  Place& pl = place_of(seg);
  SegmentHeader* evicted = nullptr;
  {
    base::LockGuard guard(pl.lock);
    uint64_t now = os::now_ms();
    seg->cached_at_ms = now;
    if (huge) seg = merge_neighbours_locked(pl, seg);
    else if (!seg->is_zero) ++pl.dirty_segments;
    (huge ? pl.huge : pl.segments).push_front(seg);
    pl.cached_bytes += seg->map_size;
    // Oldest first: the block just freed goes last, when it alone passes the allowance.
    evicted = evict_locked(pl, allowance_locked(pl, now), decay_ms(), now);
    if (pl.cached_bytes > cache_budget()) g_past_floor.store(true, std::memory_order_relaxed);
  }
  unmap_chain(evicted);
}

void unmap_chain(SegmentHeader* chain) {
  while (chain != nullptr) {
    SegmentHeader* next = chain->next;
    uintptr_t base = segment_base(chain);
    size_t size = chain->map_size;
    Place& pl = place_of(chain);
    bool segment = chain->is_segment;
    // Unregistered first: once munmap returns, the range may be another thread's new block.
    registry_set(base, false);
    if (os::unmap(reinterpret_cast<void*>(base), size)) {
      {
        base::LockGuard guard(pl.lock);
        pl.mapped_bytes -= size;
        if (segment) --pl.segment_count;
      }
      uncharge(size);
    } else {
      // Still mapped (the kernel can refuse to split a mapping at its map-count limit): keep
      // it cached and counted; a later eviction tries again.
      registry_set(base, true);
      base::LockGuard guard(pl.lock);
      ++pl.unmap_failures;
      chain->cached_at_ms = os::now_ms();
      if (segment) {
        if (!chain->is_zero) ++pl.dirty_segments;
        pl.segments.push_back(chain);
      } else {
        pl.huge.push_back(chain);
      }
      pl.cached_bytes += size;
    }
    chain = next;
  }
}

bool is_registered(uintptr_t base) { return registry_test(base); }

bool cache_past_floor() { return g_past_floor.load(std::memory_order_relaxed); }

size_t trim_cache() {
  size_t released = 0;
  for (int i = 0; i < kPlaces; ++i) {
    if (!g_place_used[i].load(std::memory_order_relaxed)) continue;
    Place& pl = g_places[i];
    SegmentHeader* chain;
    {
      base::LockGuard guard(pl.lock);
      released += pl.cached_bytes;
      // The working set starts again from what is in use now.
      pl.peak_now = pl.peak_before = pl.mapped_bytes - pl.cached_bytes;
      pl.window_start_ms = os::now_ms();
      chain = evict_locked(pl, 0, 0, 0);
    }
    unmap_chain(chain);
  }
  return released;
}

void decay_tick() {
  uint64_t now = os::now_ms();
  uint64_t last = g_last_decay_ms.load(std::memory_order_relaxed);
  if (now - last < 100 || !g_last_decay_ms.compare_exchange_strong(last, now)) return;
  for (int i = 0; i < kPlaces; ++i) {
    if (!g_place_used[i].load(std::memory_order_relaxed)) continue;
    Place& pl = g_places[i];
    SegmentHeader* chain;
    {
      base::LockGuard guard(pl.lock);
      if (pl.cached_bytes == 0) continue;
      uint64_t now = os::now_ms();
      chain = evict_locked(pl, allowance_locked(pl, now), decay_ms(), now);
    }
    unmap_chain(chain);
  }
}

namespace {
// Adds a place's figures (caller holds its lock).
void add_place_locked(SourceStats& s, const Place& pl) {
  s.mapped_bytes += pl.mapped_bytes;
  s.segment_count += pl.segment_count;
  s.small_segments += pl.small_segments;
  s.medium_segments += pl.medium_segments;
  for (const SegmentHeader* c = pl.segments.head; c != nullptr; c = c->next) s.cached_segments += c->map_size;
  s.huge_count += pl.huge_count;
  s.huge_bytes += pl.huge_bytes;
  s.cached_bytes += pl.cached_bytes;
  s.unmap_failures += pl.unmap_failures;
  s.foreign_bytes += pl.foreign_bytes;
}
}  // namespace

SourceStats stats(int place) {
  SourceStats s{};
  for (int i = 0; i < kPlaces; ++i) {
    if ((place >= 0 && i != place) || !g_place_used[i].load(std::memory_order_relaxed)) continue;
    base::LockGuard guard(g_places[i].lock);
    add_place_locked(s, g_places[i]);
  }
  s.peak_mapped_bytes = g_peak_mapped.load(std::memory_order_relaxed);
  s.limit_hits = g_limit_hits.load(std::memory_order_relaxed);
  s.mem_limit = g_mem_limit.load(std::memory_order_relaxed);
  return s;
}

SourceStats stats_try(int place, bool* complete) {
  SourceStats s{};
  *complete = true;
  for (int i = 0; i < kPlaces; ++i) {
    if ((place >= 0 && i != place) || !g_place_used[i].load(std::memory_order_relaxed)) continue;
    Place& pl = g_places[i];
    if (!pl.lock.try_lock()) {
      *complete = false;
      continue;
    }
    add_place_locked(s, pl);
    pl.lock.unlock();
  }
  s.peak_mapped_bytes = g_peak_mapped.load(std::memory_order_relaxed);
  s.limit_hits = g_limit_hits.load(std::memory_order_relaxed);
  s.mem_limit = g_mem_limit.load(std::memory_order_relaxed);
  return s;
}

void fork_prepare() {
  for (Place& pl : g_places) pl.lock.lock();
}
void fork_parent() {
  for (Place& pl : g_places) pl.lock.unlock();
}
void fork_child() {
  for (Place& pl : g_places) pl.lock.reset();
}

}  // namespace mpcalloc::source
