// Huge blocks over the block source, and the registry of over-aligned ones.
#include "chunks/huge.h"

#include "base/bits.h"
#include "base/spinlock.h"
#include "os/os_memory.h"
#include "source/block_source.h"

namespace mpcalloc::chunks {
namespace {

constexpr size_t kHeaderEnd = source::kRunTableBytes + sizeof(HugeHeader);

size_t user_offset_for(size_t align) {
  return base::align_up(kHeaderEnd, align < 64 ? 64 : align);
}

// Over-aligned blocks: open addressing on the user pointer, in a table mapped from the OS that
// doubles (and drops its tombstones) as it fills. Rare (alignment >= 4 MiB); under a lock.
struct OveralignedEntry {
  uintptr_t user;  // 0 = empty, 1 = deleted
  size_t map_size;
  int place;
};
constexpr uintptr_t kDeleted = 1;
constexpr size_t kFirstSlots = 1024;
constinit base::SpinLock g_over_lock;
constinit OveralignedEntry* g_over = nullptr;
constinit size_t g_over_slots = 0;  // a power of two
constinit size_t g_over_live = 0;
constinit size_t g_over_used = 0;  // live + deleted

size_t slot_of(uintptr_t user, size_t slots) {
  return static_cast<size_t>((user >> source::kSegmentShift) * 0x9E3779B97F4A7C15ull) & (slots - 1);
}

OveralignedEntry* over_find(uintptr_t user) {
  if (g_over == nullptr) return nullptr;
  for (size_t i = 0, s = slot_of(user, g_over_slots); i < g_over_slots; ++i, s = (s + 1) & (g_over_slots - 1)) {
    if (g_over[s].user == user) return &g_over[s];
    if (g_over[s].user == 0) return nullptr;
  }
  return nullptr;
}

void over_place(OveralignedEntry* table, size_t slots, const OveralignedEntry& e) {
  size_t s = slot_of(e.user, slots);
  while (table[s].user > kDeleted) s = (s + 1) & (slots - 1);
  table[s] = e;
}

// Room for one more entry: at most half the slots in use afterwards. false when out of memory.
bool over_reserve() {
  if ((g_over_used + 1) * 2 <= g_over_slots) return true;
  size_t slots = g_over_slots == 0 ? kFirstSlots : g_over_slots;
  while ((g_over_live + 1) * 4 > slots) slots *= 2;  // after the rehash: at most a quarter full
  auto* table = static_cast<OveralignedEntry*>(os::map(slots * sizeof(OveralignedEntry)));
  if (table == nullptr) return false;
  for (size_t i = 0; i < g_over_slots; ++i) {
    if (g_over[i].user > kDeleted) over_place(table, slots, g_over[i]);
  }
  if (g_over != nullptr) os::unmap(g_over, g_over_slots * sizeof(OveralignedEntry));
  g_over = table;
  g_over_slots = slots;
  g_over_used = g_over_live;
  return true;
}

}  // namespace

HugeResult huge_alloc(size_t size, size_t align, bool want_zero, int place) {
  size_t off = user_offset_for(align);
  size_t map_size = base::align_up(off + size, os::page_size());
  if (map_size < size) return {nullptr, false};
  source::SegmentHeader* seg = source::acquire_huge(map_size, want_zero, place);
  if (seg == nullptr) return {nullptr, false};
  reinterpret_cast<HugeHeader*>(seg)->user_offset = off;
  reinterpret_cast<HugeHeader*>(seg)->requested = size;
  return {reinterpret_cast<void*>(source::segment_base(seg) + off), seg->is_zero};
}

void huge_free(source::SegmentHeader* seg) { source::release_huge(seg); }

size_t huge_usable(const source::SegmentHeader* seg) {
  return seg->map_size - reinterpret_cast<const HugeHeader*>(seg)->user_offset;
}

void* huge_resize(source::SegmentHeader* seg, size_t new_size) {
  HugeHeader* hh = reinterpret_cast<HugeHeader*>(seg);
  size_t off = hh->user_offset;
  void* user = reinterpret_cast<void*>(source::segment_base(seg) + off);
  if (huge_grow_in_place(seg, new_size)) return user;  // a growth the mapping holds
  size_t map_size = base::align_up(off + new_size, os::page_size());
  if (map_size < new_size) return nullptr;
  if (map_size <= seg->map_size && map_size >= seg->map_size / 2) {
    // A shrink by less than half stays put too: no syscall, room to grow back. Only a real
    // shrink to under half gives the tail back.
    hh->requested = new_size;
    return user;
  }
  // Growing: leave headroom (1/8) so a sequence of small growths does few mremaps.
  if (map_size > seg->map_size) map_size = base::align_up(map_size + map_size / 8, os::page_size());
  source::SegmentHeader* moved = source::resize_huge(seg, map_size);
  if (moved == nullptr) return nullptr;
  reinterpret_cast<HugeHeader*>(moved)->requested = new_size;
  return reinterpret_cast<void*>(source::segment_base(moved) + off);
}

void* huge_alloc_overaligned(size_t size, size_t align, int place) {
  size_t map_size = base::align_up(size == 0 ? 1 : size, os::page_size());
  if (map_size < size) return nullptr;
  base::LockGuard guard(g_over_lock);
  if (!over_reserve()) return nullptr;
  void* p = source::map_overaligned(map_size, align, place);
  if (p == nullptr) return nullptr;
  over_place(g_over, g_over_slots, {reinterpret_cast<uintptr_t>(p), map_size, place});
  ++g_over_live;
  ++g_over_used;
  return p;
}

bool huge_free_overaligned(void* p) {
  size_t size;
  int place;
  {
    base::LockGuard guard(g_over_lock);
    OveralignedEntry* e = over_find(reinterpret_cast<uintptr_t>(p));
    if (e == nullptr) return false;
    size = e->map_size;
    place = e->place;
    e->user = kDeleted;  // keeps probe chains intact until the next rehash
    e->map_size = 0;
    --g_over_live;
  }
  source::unmap_overaligned(p, size, place);
  return true;
}

size_t huge_usable_overaligned(const void* p) {
  base::LockGuard guard(g_over_lock);
  OveralignedEntry* e = over_find(reinterpret_cast<uintptr_t>(p));
  return e == nullptr ? 0 : e->map_size;
}

void huge_fork_prepare() { g_over_lock.lock(); }
void huge_fork_parent() { g_over_lock.unlock(); }
void huge_fork_child() { g_over_lock.reset(); }

}  // namespace mpcalloc::chunks
