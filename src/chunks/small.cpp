// Small chunks: run refill, slow frees, collection of empty runs.
#include "chunks/small.h"

#include <atomic>
#include <cstdint>
#include <cstring>

#include "base/bits.h"
#include "base/clock.h"
#include "os/os_env.h"
#include "os/os_message.h"
#include "source/block_source.h"

namespace mpcalloc::chunks {
namespace {

constexpr uint64_t kAllRunsFree = ~uint64_t{1};  // run 0 holds the headers

std::atomic<size_t> g_small_purged{0};

SmallSegment* small_segment(uintptr_t base) {
  return reinterpret_cast<SmallSegment*>(source::segment_header(base));
}

// The runs of `mask` take a new class or leave with their segment: what small_purge gave back
// of them is no longer counted as purged.
void unpurge(SmallSegment* seg, uint64_t mask) {
  uint64_t was = seg->purged_runs & mask;
  if (was == 0) return;
  seg->purged_runs &= ~mask;
  g_small_purged.fetch_sub(base::popcount(was) * kRunSize, std::memory_order_relaxed);
}

// Up to `bytes` of blocks from the bump area, as a list ending in `tail`.
Block* carve(RunMeta* r, size_t bytes, Block* tail) {
  size_t bs = r->block_size;
  size_t n = (static_cast<size_t>(r->bump_end - r->bump)) / bs;
  size_t want = bytes / bs;
  if (want == 0) want = 1;
  if (n > want) n = want;
  char* p = r->bump;
  Block* head = reinterpret_cast<Block*>(p);
  for (size_t i = 1; i < n; ++i) {
    reinterpret_cast<Block*>(p)->next = reinterpret_cast<Block*>(p + bs);
    p += bs;
  }
  reinterpret_cast<Block*>(p)->next = tail;
  set_run_bump(r, p + bs);
  return head;
}

// Every take of a run's whole local_free list forgets its count: a counted head that came
// back into a new list would otherwise stand for blocks no longer there.
inline void forget_count(RunMeta* r) {
  r->counted_at = 0;
  r->counted = 0;
}

void link_all(SmallState& s, SmallSegment* seg) {
  seg->all_prev = nullptr;
  seg->all_next = s.all_segments;
  if (s.all_segments != nullptr) s.all_segments->all_prev = seg;
  s.all_segments = seg;
}

void unlink_all(SmallState& s, SmallSegment* seg) {
  if (seg->all_prev != nullptr) seg->all_prev->all_next = seg->all_next;
  else s.all_segments = seg->all_next;
  if (seg->all_next != nullptr) seg->all_next->all_prev = seg->all_prev;
}

RunMeta* new_run(SmallState& s, unsigned cls) {
  source::SegmentHeader* h = s.segments.head;
  if (h == nullptr) {
    h = source::acquire_segment(source::SegmentKind::kSmall, s.owner, s.place);
    if (h == nullptr) return nullptr;
    ++s.segment_count;
    SmallSegment* fresh = reinterpret_cast<SmallSegment*>(h);
    fresh->free_runs = kAllRunsFree;
    fresh->purged_runs = 0;
    // A fresh mapping has nothing to give back; a segment from the cache may have resident
    // pages anywhere, which age from now.
    fresh->untouched_runs = h->is_zero ? kAllRunsFree : 0;
    if (!h->is_zero) {
      auto now = static_cast<uint32_t>(os::now_ms());
      RunTable* t = reinterpret_cast<RunTable*>(source::segment_base(h));
      for (unsigned i = 1; i < kRunsPerSegment; ++i) t->meta[i].counted_at = now;
    }
    s.segments.push_front(h);
    link_all(s, fresh);
  }
  SmallSegment* seg = reinterpret_cast<SmallSegment*>(h);
  unsigned idx = base::lowest_bit(seg->free_runs);
  uint64_t bit = uint64_t{1} << idx;
  seg->free_runs &= ~bit;
  seg->untouched_runs &= ~bit;
  unpurge(seg, bit);
  if (seg->free_runs == 0) s.segments.remove(h);
  RunMeta* r = &reinterpret_cast<RunTable*>(source::segment_base(h))->meta[idx];
  size_t bs = base::small_class_size(cls);
  r->block_size = static_cast<uint32_t>(bs);
  r->cls = static_cast<uint8_t>(cls);
  r->index = static_cast<uint8_t>(idx);
  size_t colours = kRunSize % bs / kColourStep + 1;
  r->colour = static_cast<uint16_t>(s.runs_made++ % colours * kColourStep);
  run_local_free(r) = nullptr;
  forget_count(r);
  set_run_bump(r, run_first(r));
  r->bump_end = run_first(r) + (kRunSize / bs) * bs;
  r->next = r->prev = nullptr;
  // The segment may come dirty from the cache (medium data or an earlier run's bits there).
  if (s.check_bitmaps) std::memset(run_check_bitmap(r), 0, kCheckBitmapBytes);
  return r;
}

void release_run(SmallState& s, RunMeta* r) {
  uintptr_t base = run_segment_base(r);
  SmallSegment* seg = small_segment(base);
  set_run_state(r, kRunUnused);
  run_owner_key(r) = nullptr;
  run_local_free(r) = nullptr;
  forget_count(r);
  r->counted_at = static_cast<uint32_t>(os::now_ms());  // small_purge's age
  if (seg->free_runs == 0) s.segments.push_front(&seg->h);
  seg->free_runs |= uint64_t{1} << r->index;
  if (seg->free_runs == kAllRunsFree) {
    s.segments.remove(&seg->h);
    --s.segment_count;
    unlink_all(s, seg);
    unpurge(seg, kAllRunsFree);
    source::release_segment(&seg->h);
  }
}

// Hardening at no fast-path cost: a free-list pointer that leaves its run means the program
// wrote into a freed block (or the list was corrupted); stop before the allocator hands out
// someone else's memory.
[[noreturn]] void corrupted(const RunMeta* r, const Block* b) {
  os::Message m;
  m.text("mpcalloc: corrupted free list of run ").hex(reinterpret_cast<uintptr_t>(run_start(r)));
  m.text(" (size class ").dec(r->block_size).text(" B): bad block pointer ");
  m.hex(reinterpret_cast<uintptr_t>(b)).text(" (write after free?)");
  os::fatal(m);
}

inline void check_in_run(const RunMeta* r, const Block* b) {
  uintptr_t start = reinterpret_cast<uintptr_t>(run_first(r));
  uintptr_t a = reinterpret_cast<uintptr_t>(b);
  if (a < start || a >= reinterpret_cast<uintptr_t>(r->bump) || (a - start) % r->block_size != 0) {
    corrupted(r, b);
  }
}

}  // namespace

void small_check_block(const Block* b) {
  uintptr_t base = source::segment_base_of(b);
  if (!source::is_registered(base) ||
      source::segment_header(base)->kind != source::SegmentKind::kSmall) {
    os::Message m;
    m.text("mpcalloc: corrupted free list: bad block pointer ").hex(reinterpret_cast<uintptr_t>(b));
    m.text(" (write after free?)");
    os::fatal(m);
  }
  check_in_run(run_of(b), b);
}

namespace {

inline void map_block(uint64_t* map, const RunMeta* r, const Block* b) {
  size_t i = static_cast<size_t>(reinterpret_cast<const char*>(b) - run_start(r)) >> 4;
  map[i >> 6] |= uint64_t{1} << (i & 63);
}

inline const Block* count_mark(const RunMeta* r) {
  return r->counted_at != 0
      ? reinterpret_cast<const Block*>(run_segment_base(r) + r->counted_at) : nullptr;
}

// Length of a run's local_free list, checking every new pointer against the run's bounds.
// Only the blocks pushed since the last count are walked: the rest of the list is the one
// counted then (frees push in front; takes forget the count). A collection used to walk
// every free block of every partial run again, cold memory mostly. With `map`, the walked
// blocks go into the run's free map too (cleared at a count that starts afresh).
size_t free_count(RunMeta* r, bool map) {
  Block* head = run_local_free(r);
  const Block* mark = count_mark(r);
  if (head == nullptr && mark == nullptr) return 0;  // a run with every block out: no map
  uint64_t* bits = map ? run_free_map(r) : nullptr;
  if (bits != nullptr && mark == nullptr) std::memset(bits, 0, kCheckBitmapBytes);
  size_t n = 0;
  size_t limit = run_capacity(r);
  const Block* b = head;
  for (; b != mark && b != nullptr; b = b->next) {
    check_in_run(r, b);
    if (++n > limit) corrupted(r, b);  // a cycle
    if (bits != nullptr) map_block(bits, r, b);
  }
  if (b != nullptr) {
    n += r->counted;  // reached the counted part
  } else if (mark != nullptr && bits != nullptr) {
    // The counted part is gone (cannot happen while frees only push in front): map afresh.
    std::memset(bits, 0, kCheckBitmapBytes);
    for (b = head; b != nullptr; b = b->next) map_block(bits, r, b);
  }
  if (n > limit) corrupted(r, head);
  r->counted_at = head != nullptr
      ? static_cast<uint32_t>(reinterpret_cast<uintptr_t>(head) - run_segment_base(r)) : 0;
  r->counted = static_cast<uint16_t>(n);
  return n;
}

// The free blocks of a partial run taken back into use (list: its whole local_free), in
// address order when its free map is complete after walking at most kReorderWalk blocks
// freed since the last count; otherwise list as it is. After a phase of frees the list runs
// in the order the frees came, scattered over the run; in address order the next mallocs
// hand out neighbours, as from a fresh run (py_objects: 8-10 % less CPU). The map is
// rebuilt into links without reading the blocks; its count is spent either way.
Block* address_order(RunMeta* r, Block* list) {
  const Block* mark = count_mark(r);
  if (mark == nullptr) return list;
  uint64_t* bits = run_free_map(r);
  unsigned fresh = 0;
  for (const Block* b = list; b != mark; b = b->next) {
    if (b == nullptr || ++fresh > kReorderWalk) return list;
    check_in_run(r, b);
    map_block(bits, r, b);
  }
  if (fresh + r->counted <= kReorderMin) return list;
  char* start = run_start(r);
  size_t words = ((static_cast<size_t>(r->bump - start) >> 4) + 63) >> 6;
  Block* head = nullptr;
  Block** link = &head;
  for (size_t w = 0; w < words; ++w) {
    for (uint64_t m = bits[w]; m != 0; m &= m - 1) {
      Block* b = reinterpret_cast<Block*>(start + ((w * 64 + base::lowest_bit(m)) << 4));
      *link = b;
      link = &b->next;
    }
  }
  *link = nullptr;
  return head;
}

inline void activate(SmallState& s, RunMeta* r, unsigned cls) {
  set_run_state(r, kRunActive);
  run_owner_key(r) = s.key;
  s.active[cls] = r;
}

}  // namespace

Block* small_take_local(RunMeta* r) {
  Block*& local = run_local_free(r);
  Block* list = local;
  local = nullptr;
  forget_count(r);
  if (list != nullptr) check_in_run(r, list);
  // A run in use gets one more batch when it has nothing freed to reuse, or while it is
  // young; past kCarveBytes it grows only when its owner has nothing freed to reuse (keeps
  // the touched memory near the live set).
  if (r->bump < r->bump_end &&
      (list == nullptr || static_cast<size_t>(r->bump - run_start(r)) < kCarveBytes)) {
    list = carve(r, kCarveBytes, list);
  }
  return list;
}

Block* small_refill_reuse(SmallState& s, unsigned cls) {
  RunMeta* r = s.active[cls];
  if (r != nullptr) {
    if (Block* list = small_take_local(r)) return list;
    // Every block is out: to the back of the partial queue, still taking fast frees; if it
    // is still empty when its turn comes, it is marked full then.
    set_run_state(r, kRunPartial);
    s.partial[cls].push_back(r);
    s.active[cls] = nullptr;
  }
  Block* list = nullptr;
  while ((r = s.partial[cls].pop_front()) != nullptr) {
    list = run_local_free(r);
    // (A run not carved whole was another heap's active run: see small_absorb.)
    if (list != nullptr || r->bump < r->bump_end) break;
    // Frees to it now take the slow path, which puts it back in play.
    set_run_state(r, kRunFull);
    run_owner_key(r) = s.slow_key;
  }
  if (r == nullptr) return nullptr;
  run_local_free(r) = nullptr;
  if (list != nullptr) {
    check_in_run(r, list);
    if (!s.check_bitmaps) list = address_order(r, list);
  } else {
    list = carve(r, kCarveBytes, nullptr);
  }
  forget_count(r);
  activate(s, r, cls);
  return list;
}

Block* small_refill_new(SmallState& s, unsigned cls) {
  RunMeta* r = new_run(s, cls);
  if (r == nullptr) return nullptr;
  Block* list = carve(r, kFirstCarveBytes, nullptr);
  activate(s, r, cls);
  return list;
}

Block* small_refill(SmallState& s, unsigned cls) {
  if (Block* list = small_refill_reuse(s, cls)) return list;
  return small_refill_new(s, cls);
}

void small_set_key(SmallState& s, const void* key) {
  __atomic_store_n(&s.key, key, __ATOMIC_RELAXED);  // read by collectors of idle heaps
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    if (s.active[cls] != nullptr) run_owner_key(s.active[cls]) = key;
    for (RunMeta* r = s.partial[cls].head; r != nullptr; r = r->next) run_owner_key(r) = key;
  }
}

namespace {
void push_chain(SmallState& s, RunMeta* r, Block* first, Block* last) {
  Block*& local = run_local_free(r);
  last->next = local;
  local = first;
  if (r->state != kRunFull) return;
  // Back in play, at the end of the queue: refills take the run that has been partial the
  // longest, so it has gathered the most frees (taking the newest, with its one block, made
  // every refill yield a single block and the run full again at once).
  set_run_state(r, kRunPartial);
  s.partial[r->cls].push_back(r);
}
}  // namespace

void small_free_local(SmallState& s, RunMeta* r, Block* b) {
  push_chain(s, r, b, b);
  // The owner frees into this run: its next frees take the fast path. A run back from full
  // or brought back by a drain (unkeyed) is keyed; the active run already is.
  if (r->state == kRunPartial && run_owner_key(r) != s.key) run_owner_key(r) = s.key;
}

void small_free_chain_unkeyed(SmallState& s, RunMeta* r, Block* first, Block* last) {
  push_chain(s, r, first, last);
}

size_t small_purge(SmallState& s, uint64_t now_ms, uint64_t age_ms, bool lazy) {
  size_t purged = 0;
  auto now = static_cast<uint32_t>(now_ms);
  for (source::SegmentHeader* h = s.segments.head; h != nullptr; h = h->next) {
    SmallSegment* seg = reinterpret_cast<SmallSegment*>(h);
    RunTable* t = reinterpret_cast<RunTable*>(source::segment_base(h));
    uint64_t due = 0;
    uint64_t resident = seg->free_runs & ~seg->purged_runs & ~seg->untouched_runs;
    for (uint64_t bits = resident; bits != 0; bits &= bits - 1) {
      unsigned i = base::lowest_bit(bits);
      // A run released after `now` was read (the owner's collection released it a clock tick
      // later) is young, not 2^32 ms old.
      if (age_ms == 0 || base::aged(t->meta[i].counted_at, now, age_ms)) due |= uint64_t{1} << i;
    }
    while (due != 0) {
      unsigned first = base::lowest_bit(due);
      uint64_t stretch = due & ~(due + (uint64_t{1} << first));  // the run of ones from first
      size_t bytes = static_cast<size_t>(base::popcount(stretch)) * kRunSize;
      void* start = reinterpret_cast<char*>(t) + (uintptr_t{first} << kRunShift);
      if (os::purge(start, bytes, lazy)) {
        seg->purged_runs |= stretch;
        purged += bytes;
      }
      due &= ~stretch;
    }
  }
  g_small_purged.fetch_add(purged, std::memory_order_relaxed);
  return purged;
}

size_t small_purged_bytes() { return g_small_purged.load(std::memory_order_relaxed); }

void small_absorb(SmallState& into, SmallState& from) {
  // Every run in use takes into's slow key first; the active and partial ones then join
  // into's partial queues (their local_free lists and counts stay as they are).
  while (SmallSegment* seg = from.all_segments) {
    unlink_all(from, seg);
    source::set_segment_owner(&seg->h, into.owner);
    RunTable* t = reinterpret_cast<RunTable*>(source::segment_base(&seg->h));
    for (uint64_t used = ~seg->free_runs & kAllRunsFree; used != 0; used &= used - 1) {
      t->owner_key[base::lowest_bit(used)] = into.slow_key;
    }
    link_all(into, seg);
  }
  while (source::SegmentHeader* h = from.segments.pop_front()) into.segments.push_front(h);
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    if (RunMeta* r = from.active[cls]) {
      from.active[cls] = nullptr;
      set_run_state(r, kRunPartial);
      into.partial[cls].push_back(r);
    }
    into.partial[cls].append(from.partial[cls]);
  }
  into.segment_count += from.segment_count;
  from.segment_count = 0;
}

size_t small_collect_unkeyed(SmallState& s) {
  size_t released = 0;
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    RunMeta* r = s.partial[cls].head;
    while (r != nullptr) {
      RunMeta* next = r->next;
      if (run_owner_key(r) == s.slow_key && free_count(r, !s.check_bitmaps) == run_carved(r)) {
        s.partial[cls].remove(r);
        release_run(s, r);
        ++released;
      }
      r = next;
    }
  }
  return released;
}

size_t small_collect(SmallState& s, bool all) {
  size_t released = 0;
  s.runs_at_collect = s.runs_made;
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    RunMeta* r = s.partial[cls].head;
    while (r != nullptr) {
      RunMeta* next = r->next;
      if (free_count(r, !s.check_bitmaps) == run_carved(r)) {
        s.partial[cls].remove(r);
        release_run(s, r);
        ++released;
      }
      r = next;
    }
    r = s.active[cls];
    if (all && r != nullptr) {
      // The caller has handed its cached blocks back to local_free first.
      if (free_count(r, !s.check_bitmaps) == run_carved(r)) {
        s.active[cls] = nullptr;
        release_run(s, r);
        ++released;
      } else {
        forget_count(r);  // malloc pops its list: the count would not stay true
      }
    }
  }
  return released;
}

}  // namespace mpcalloc::chunks
