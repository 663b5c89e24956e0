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

// Over-aligned blocks: open addressing on the user pointer. Rare (alignment >= 4 MiB).
struct OveralignedEntry {
  uintptr_t user = 0;  // 0 = empty, 1 = deleted
  size_t map_size = 0;
};
constexpr size_t kOveralignedSlots = 4096;
constinit base::SpinLock g_over_lock;
constinit OveralignedEntry g_over[kOveralignedSlots] = {};

size_t slot_of(uintptr_t user) { return (user >> source::kSegmentShift) * 0x9E3779B97F4A7C15ull >> 52; }

OveralignedEntry* over_find(uintptr_t user) {
  for (size_t i = 0, s = slot_of(user); i < kOveralignedSlots; ++i, s = (s + 1) % kOveralignedSlots) {
    if (g_over[s].user == user) return &g_over[s];
    if (g_over[s].user == 0) return nullptr;
  }
  return nullptr;
}

}  // namespace

HugeResult huge_alloc(size_t size, size_t align, bool want_zero) {
  size_t off = user_offset_for(align);
  size_t map_size = base::align_up(off + size, os::kPageSize);
  if (map_size < size) return {nullptr, false};
  source::SegmentHeader* seg = source::acquire_huge(map_size, want_zero);
  if (seg == nullptr) return {nullptr, false};
  reinterpret_cast<HugeHeader*>(seg)->user_offset = off;
  return {reinterpret_cast<void*>(source::segment_base(seg) + off), seg->is_zero};
}

void huge_free(source::SegmentHeader* seg) { source::release_huge(seg); }

size_t huge_usable(const source::SegmentHeader* seg) {
  return seg->map_size - reinterpret_cast<const HugeHeader*>(seg)->user_offset;
}

void* huge_resize(source::SegmentHeader* seg, size_t new_size) {
  size_t off = reinterpret_cast<HugeHeader*>(seg)->user_offset;
  size_t map_size = base::align_up(off + new_size, os::kPageSize);
  if (map_size < new_size) return nullptr;
  // Shrinking by less than half keeps the mapping: no syscall, room to grow back.
  if (map_size <= seg->map_size && map_size >= seg->map_size / 2) {
    return reinterpret_cast<void*>(source::segment_base(seg) + off);
  }
  // Growing: leave headroom (1/8) so a sequence of small growths does few mremaps.
  if (map_size > seg->map_size) map_size = base::align_up(map_size + map_size / 8, os::kPageSize);
  source::SegmentHeader* moved = source::resize_huge(seg, map_size);
  if (moved == nullptr) return nullptr;
  return reinterpret_cast<void*>(source::segment_base(moved) + off);
}

void* huge_alloc_overaligned(size_t size, size_t align) {
  size_t map_size = base::align_up(size == 0 ? 1 : size, os::kPageSize);
  if (map_size < size) return nullptr;
  base::LockGuard guard(g_over_lock);
  OveralignedEntry* slot = nullptr;
  for (size_t i = 0; i < kOveralignedSlots; ++i) {
    if (g_over[i].user <= 1) {
      slot = &g_over[i];
      break;
    }
  }
  if (slot == nullptr) return nullptr;
  os::MapResult m = os::map_aligned(map_size, align);
  if (m.addr == nullptr) return nullptr;
  // Re-place the entry at its hash slot if that one is free, for fast look-up.
  uintptr_t user = reinterpret_cast<uintptr_t>(m.addr);
  for (size_t i = 0, s = slot_of(user); i < kOveralignedSlots; ++i, s = (s + 1) % kOveralignedSlots) {
    if (g_over[s].user <= 1) {
      slot = &g_over[s];
      break;
    }
  }
  slot->user = user;
  slot->map_size = map_size;
  return m.addr;
}

bool huge_free_overaligned(void* p) {
  size_t size;
  {
    base::LockGuard guard(g_over_lock);
    OveralignedEntry* e = over_find(reinterpret_cast<uintptr_t>(p));
    if (e == nullptr) return false;
    size = e->map_size;
    e->user = 1;  // deleted: keeps probe chains intact
    e->map_size = 0;
  }
  os::unmap(p, size);
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
