// Medium chunks: segregated free lists and boundary-tag merging.
#include "chunks/medium.h"

#include <atomic>

#include "base/bits.h"
#include "os/os_memory.h"
#include "source/block_source.h"

namespace mpcalloc::chunks {
namespace {

constexpr size_t kArenaEnd = source::kSegmentSize - kChunkHeader;  // sentinel header there
constexpr size_t kArenaSize = kArenaEnd - kMediumArenaOffset;
constexpr unsigned kFirstScan = 16;  // first-fit look-ups in the exact bin before moving up

// Bin 0: below 8 KiB (fragments, kept for merging). Then 4 bins per power of two.
constexpr unsigned bin_of(size_t size) {
  if (size < 8192) return 0;
  unsigned e = base::log2_floor(size);
  unsigned sub = static_cast<unsigned>((size >> (e - 2)) & 3);
  unsigned b = 1 + (e - 13) * 4 + sub;
  return b < kMediumBins ? b : kMediumBins - 1;
}
static_assert(bin_of(kArenaSize) < kMediumBins);

inline Chunk* at(void* base, size_t off) {
  return reinterpret_cast<Chunk*>(static_cast<char*>(base) + off);
}
inline Chunk* next_chunk(Chunk* c) { return at(c, chunk_size(c)); }

void bin_insert(MediumState& s, Chunk* c) {
  unsigned b = bin_of(chunk_size(c));
  c->bk = nullptr;
  c->fd = s.bins[b];
  if (c->fd != nullptr) c->fd->bk = c;
  s.bins[b] = c;
  s.nonempty |= uint64_t{1} << b;
}

// The whole pages of free chunk c (of `size` bytes) that a purge gives back: past its header
// and free-list fields, up to its end (the next chunk's header is past that).
struct PageRange {
  uintptr_t start, end;
  size_t bytes() const { return end > start ? end - start : 0; }
};
PageRange purge_range(const Chunk* c, size_t size) {
  uintptr_t a = reinterpret_cast<uintptr_t>(c);
  return {base::align_up(a + sizeof(Chunk), os::page_size()), base::align_down(a + size, os::page_size())};
}

std::atomic<size_t> g_purged{0};

void bin_remove(MediumState& s, Chunk* c) {
  if ((head_of(c) & kPurged) != 0) {  // leaving the free lists: its pages come back on use
    size_t n = purge_range(c, chunk_size(c)).bytes();
    s.purged_bytes -= n;
    g_purged.fetch_sub(n, std::memory_order_relaxed);
  }
  unsigned b = bin_of(chunk_size(c));
  if (c->bk != nullptr) c->bk->fd = c->fd;
  else s.bins[b] = c->fd;
  if (c->fd != nullptr) c->fd->bk = c->bk;
  if (s.bins[b] == nullptr) s.nonempty &= ~(uint64_t{1} << b);
}

// Marks [c, c+size) free with footer, clears the next chunk's kPrevInUse, and bins it.
void make_free(MediumState& s, Chunk* c, size_t size) {
  set_head(c, size | kPrevInUse);  // a free chunk's previous chunk is always in use (merged)
  c->freed_ms = s.clock_ms;
  Chunk* n = at(c, size);
  n->prev_size = size;
  set_head(n, head_of(n) & ~kPrevInUse);
  bin_insert(s, c);
}

// Quick-list class of a request (rounding up) and of a chunk's usable size (rounding down).
constexpr unsigned quick_class_up(size_t size) {
  if (size <= 8192) return 0;
  unsigned e = base::log2_floor(size - 1);  // size in (2^e, 2^(e+1)]
  unsigned sub = static_cast<unsigned>(((size - 1) >> (e - 3)) & 7);
  return (e - 13) * 8 + sub;
}
constexpr size_t quick_class_size(unsigned cls) {
  unsigned e = 13 + cls / 8;
  return (size_t{1} << e) + (cls % 8 + 1) * (size_t{1} << (e - 3));
}
static_assert(quick_class_size(quick_class_up(8193)) >= 8193);
static_assert(quick_class_up(kMediumMax) == kQuickClasses - 1);
static_assert(quick_class_size(kQuickClasses - 1) == kMediumMax);

Chunk* find_fit(MediumState& s, size_t need) {
  unsigned b = bin_of(need);
  unsigned looked = 0;
  for (Chunk* c = s.bins[b]; c != nullptr && looked < kFirstScan; c = c->fd, ++looked) {
    if (chunk_size(c) >= need) {
      bin_remove(s, c);
      return c;
    }
  }
  uint64_t higher = b + 1 < 64 ? s.nonempty & ~((uint64_t{2} << b) - 1) : 0;
  if (higher == 0) return nullptr;
  Chunk* c = s.bins[base::lowest_bit(higher)];
  bin_remove(s, c);
  return c;
}

// A chunk of a quick list whose chunks hold at least `need` bytes, taken off it (the smallest
// such class): split, it serves a request the free lists cannot, before a segment is mapped.
// The other quick chunks keep their places. Still marked in use, as quick chunks are.
Chunk* take_larger_quick(MediumState& s, size_t need) {
  unsigned qc = need - kChunkHeader <= quick_class_size(0) ? 0 : quick_class_up(need - kChunkHeader);
  for (; qc < kQuickClasses; ++qc) {
    Chunk* c = s.quick[qc];
    if (c == nullptr || chunk_size(c) < need) continue;
    s.quick[qc] = c->fd;
    s.quick_bytes -= chunk_size(c);
    return c;
  }
  return nullptr;
}

Chunk* new_segment(MediumState& s) {
  source::SegmentHeader* h = source::acquire_segment(source::SegmentKind::kMedium, s.owner, s.place);
  if (h == nullptr) return nullptr;
  s.segments.push_front(h);
  ++s.segment_count;
  void* base = reinterpret_cast<void*>(source::segment_base(h));
  Chunk* sentinel = at(base, kArenaEnd);
  set_head(sentinel, kInUse);  // size 0, never freed: stops merging at the end
  Chunk* c = at(base, kMediumArenaOffset);
  set_head(c, kArenaSize | kPrevInUse);
  sentinel->prev_size = kArenaSize;
  return c;  // free, not binned
}

bool is_whole_arena(const Chunk* c) {
  return (reinterpret_cast<uintptr_t>(c) & source::kSegmentMask) == kMediumArenaOffset &&
         chunk_size(c) == kArenaSize;
}

void release_segment_of(MediumState& s, Chunk* c) {
  source::SegmentHeader* h = source::segment_header(source::segment_base_of(c));
  s.segments.remove(h);
  --s.segment_count;
  source::release_segment(h);
}

// Takes the in-use chunk c (currently `size` bytes) down to `need` bytes, freeing the tail.
void trim_tail(MediumState& s, Chunk* c, size_t need) {
  size_t size = chunk_size(c);
  if (size - need < kMinChunk) return;
  set_head(c, need | kInUse | (head_of(c) & kPrevInUse));
  Chunk* tail = at(c, need);
  size_t tail_size = size - need;
  Chunk* n = at(tail, tail_size);
  if ((head_of(n) & kInUse) == 0) {
    bin_remove(s, n);
    tail_size += chunk_size(n);
  }
  make_free(s, tail, tail_size);
}

}  // namespace

void* medium_alloc(MediumState& s, size_t size, size_t align) {
  if (align <= 16 && size <= kMediumMax) {
    unsigned qc = quick_class_up(size);
    Chunk* q = s.quick[qc];
    if (q != nullptr) {
      s.quick[qc] = q->fd;
      s.quick_bytes -= chunk_size(q);
      s.in_use_bytes += chunk_size(q);
      return reinterpret_cast<char*>(q) + kChunkHeader;
    }
    size = quick_class_size(qc);
  }
  size_t need = medium_need(size);
  size_t search = align > 16 ? need + align + kMinChunk : need;
  if (search > kArenaSize) return nullptr;
  Chunk* c = find_fit(s, search);
  // (Not for over-aligned requests: their lead split needs a chunk whose previous is in use.)
  if (c == nullptr && s.quick_bytes != 0 && align <= 16) c = take_larger_quick(s, need);
  if (c == nullptr) {
    c = new_segment(s);
    if (c == nullptr && s.quick_bytes != 0) {
      // No more memory from the OS (a limit): what waits in the quick lists merges, may fit.
      medium_flush_quick(s);
      c = find_fit(s, search);
    }
    if (c == nullptr) return nullptr;
  }
  // c is free and unbinned (its previous chunk in use), or a quick chunk (still marked in use).
  if (align > 16) {
    uintptr_t user = base::align_up(reinterpret_cast<uintptr_t>(c) + kChunkHeader, align);
    size_t lead = user - kChunkHeader - reinterpret_cast<uintptr_t>(c);
    if (lead != 0 && lead < kMinChunk) lead += base::align_up(kMinChunk - lead, align);
    if (lead != 0) {
      size_t total = chunk_size(c);
      Chunk* rest = at(c, lead);
      make_free(s, c, lead);
      set_head(rest, total - lead);  // previous (the lead) is free
      c = rest;
    }
  }
  size_t size_now = chunk_size(c);
  set_head(c, size_now | kInUse | (head_of(c) & kPrevInUse));
  set_head(next_chunk(c), head_of(next_chunk(c)) | kPrevInUse);
  trim_tail(s, c, need);
  s.in_use_bytes += chunk_size(c);
  return reinterpret_cast<char*>(c) + kChunkHeader;
}

namespace {
void free_chunk(MediumState& s, Chunk* c) {
  size_t size = chunk_size(c);
  Chunk* n = at(c, size);
  if ((head_of(c) & kPrevInUse) == 0) {
    Chunk* prev = reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(c) - c->prev_size);
    bin_remove(s, prev);
    size += chunk_size(prev);
    c = prev;
  }
  if ((head_of(n) & kInUse) == 0) {
    bin_remove(s, n);
    size += chunk_size(n);
  }
  set_head(c, size | kPrevInUse);
  if (is_whole_arena(c) && s.segment_count > 1) {
    release_segment_of(s, c);
    return;
  }
  make_free(s, c, size);
}
}  // namespace

namespace {
// Whether freed chunk c (of `size` bytes) waits in a quick list (see kQuickMaxBytes). When the
// lists hold more than the heap has in use, they are flushed first.
bool quick_takes(MediumState& s, const Chunk* c, size_t size) {
  if (s.quick_bytes > s.in_use_bytes) medium_flush_quick(s);
  size_t cap = s.in_use_bytes < kQuickMaxBytes ? s.in_use_bytes : kQuickMaxBytes;
  if (s.quick_bytes + size <= cap) return true;
  return s.quick_bytes + size <= kQuickNewestBytes &&
         source::segment_base_of(c) == source::segment_base(s.segments.head);
}
}  // namespace

void medium_free(MediumState& s, void* p) {
  Chunk* c = chunk_of(p);
  size_t size = chunk_size(c);
  size_t usable = size - kChunkHeader;
  s.in_use_bytes -= size;
  // A chunk past the largest class (grown in place beyond 1 MiB) has no list: it merges.
  if (!s.quick_off && usable >= quick_class_size(0) && usable <= kMediumMax &&
      quick_takes(s, c, size)) {
    // Largest class the chunk can serve whole.
    unsigned qc = quick_class_up(usable);
    if (quick_class_size(qc) > usable) --qc;
    c->fd = s.quick[qc];
    c->freed_ms = s.clock_ms;
    s.quick[qc] = c;
    s.quick_bytes += size;
    return;
  }
  free_chunk(s, c);
}

void medium_flush_quick(MediumState& s) {
  for (unsigned qc = 0; qc < kQuickClasses; ++qc) {
    Chunk* c = s.quick[qc];
    s.quick[qc] = nullptr;
    while (c != nullptr) {
      Chunk* next = c->fd;
      free_chunk(s, c);
      c = next;
    }
  }
  s.quick_bytes = 0;
}

void medium_flush_quick_older(MediumState& s, uint64_t age_ms) {
  if (s.quick_bytes == 0) return;
  for (unsigned qc = 0; qc < kQuickClasses; ++qc) {
    // Each list is newest first: cut it at the first chunk old enough, flush the rest.
    Chunk** link = &s.quick[qc];
    while (*link != nullptr && s.clock_ms - (*link)->freed_ms < age_ms) link = &(*link)->fd;
    Chunk* c = *link;
    *link = nullptr;
    while (c != nullptr) {
      Chunk* next = c->fd;
      s.quick_bytes -= chunk_size(c);
      free_chunk(s, c);
      c = next;
    }
  }
}

bool medium_resize_in_place(MediumState& s, void* p, size_t new_size) {
  Chunk* c = chunk_of(p);
  size_t size = chunk_size(c);
  size_t need = medium_need(new_size);
  if (need <= size) {
    // A shrink by less than 1/8 keeps its slack: the headroom a growing buffer got below
    // survives its next appends.
    if (size - need >= size / 8) trim_tail(s, c, need);
    s.in_use_bytes = s.in_use_bytes - size + chunk_size(c);
    return true;
  }
  Chunk* n = at(c, size);
  if ((head_of(n) & kInUse) != 0 || size + chunk_size(n) < need) return false;
  bin_remove(s, n);
  size_t total = size + chunk_size(n);
  set_head(c, total | kInUse | (head_of(c) & kPrevInUse));
  set_head(at(c, total), head_of(at(c, total)) | kPrevInUse);
  // Growing in place takes 1/8 headroom when the neighbour has it, so a buffer grown by small
  // appends merges with its neighbour once per 1/8 of growth, not at every call.
  size_t want = base::align_up(need + need / 8, 16);
  trim_tail(s, c, want < total ? want : total);
  s.in_use_bytes = s.in_use_bytes - size + chunk_size(c);
  return true;
}

size_t medium_collect(MediumState& s) {
  medium_flush_quick(s);
  size_t released = 0;
  source::SegmentHeader* h = s.segments.head;
  while (h != nullptr) {
    source::SegmentHeader* next = h->next;
    Chunk* c = at(reinterpret_cast<void*>(source::segment_base(h)), kMediumArenaOffset);
    if ((head_of(c) & kInUse) == 0 && is_whole_arena(c)) {
      bin_remove(s, c);
      s.segments.remove(h);
      --s.segment_count;
      source::release_segment(h);
      ++released;
    }
    h = next;
  }
  return released;
}

size_t medium_purge(MediumState& s, uint64_t age_ms, bool lazy) {
  // Small fragments are not worth a system call each.
  const size_t kMinPurge = 4 * os::page_size();
  size_t purged = 0;
  for (uint64_t bins = s.nonempty & ~uint64_t{1}; bins != 0; bins &= bins - 1) {
    for (Chunk* c = s.bins[base::lowest_bit(bins)]; c != nullptr; c = c->fd) {
      size_t head = head_of(c);
      if ((head & kPurged) != 0 || s.clock_ms - c->freed_ms < age_ms) continue;
      PageRange r = purge_range(c, head & ~kFlagMask);
      if (r.bytes() < kMinPurge) continue;
      if (!os::purge(reinterpret_cast<void*>(r.start), r.bytes(), lazy)) continue;
      set_head(c, head | kPurged);
      purged += r.bytes();
    }
  }
  s.purged_bytes += purged;
  g_purged.fetch_add(purged, std::memory_order_relaxed);
  return purged;
}

size_t medium_purged_bytes() { return g_purged.load(std::memory_order_relaxed); }

void medium_absorb(MediumState& into, MediumState& from) {
  medium_flush_quick(from);
  for (source::SegmentHeader* h = from.segments.head; h != nullptr; h = h->next) {
    source::set_segment_owner(h, into.owner);
  }
  into.segments.append(from.segments);
  for (Chunk*& head : from.bins) {
    while (Chunk* c = head) {
      head = c->fd;
      bin_insert(into, c);  // relinks c
    }
  }
  from.nonempty = 0;
  into.segment_count += from.segment_count;
  into.in_use_bytes += from.in_use_bytes;
  into.purged_bytes += from.purged_bytes;
  from.segment_count = from.in_use_bytes = from.purged_bytes = 0;
}

ChunkStatus medium_classify(const void* p) {
  uintptr_t base = source::segment_base_of(p);
  uintptr_t target = reinterpret_cast<uintptr_t>(p) - kChunkHeader;
  if (target < base + kMediumArenaOffset || target >= base + kArenaEnd) return ChunkStatus::kOutside;
  Chunk* c = at(reinterpret_cast<void*>(base), kMediumArenaOffset);
  while (reinterpret_cast<uintptr_t>(c) < target) {
    size_t sz = chunk_size(c);
    if (sz == 0) return ChunkStatus::kOutside;
    c = at(c, sz);
  }
  if (reinterpret_cast<uintptr_t>(c) != target) return ChunkStatus::kInterior;
  size_t head = head_of(c);
  return (head & kInUse) != 0 && (head & kFreePending) == 0 ? ChunkStatus::kInUse : ChunkStatus::kFree;
}

}  // namespace mpcalloc::chunks
