// Checked mode (MPCALLOC_CHECK=1): every block carries, at the end of its usable space, its
// requested size (xor a key), and canary bytes between the request and that trailer; small
// runs keep an occupancy bitmap. Every free is validated before anything near the pointer is
// read. Also what runs under memcheck: the entry points below describe blocks to it. Layer heap.
#include <cstring>

#include "chunks/huge.h"
#include "heap/heap_internal.h"
#include "os/os_message.h"
#include "source/block_source.h"

namespace mpcalloc::heap {
namespace {

using chunks::RunMeta;
using source::SegmentHeader;
using source::SegmentKind;

constexpr uint64_t kTrailerKey = 0x5a17c0de5a17c0deull;
constexpr unsigned char kCanary = 0xab;

[[noreturn]] void fatal_report(const char* what, const void* p, const char* detail,
                               size_t detail_size, const char* call) {
  os::Message m;
  m.text("mpcalloc: ").text(what).text(" of ").hex(reinterpret_cast<uintptr_t>(p));
  if (detail != nullptr) m.text(" (").text(detail).dec(detail_size).text(" B)");
  m.text(" in ").text(call).text("()");
  os::fatal(m);
}

// p is no live block: abort with the report, or (memcheck reporting) tell the caller.
size_t report(const char* what, const void* p, const char* detail, size_t detail_size,
              const char* call) {
  if (valgrind_reports()) return kNotABlock;
  fatal_report(what, p, detail, detail_size, call);
}

bool bitmap_test_and_set(RunMeta* r, size_t i, bool set) {
  uint8_t* byte = chunks::run_check_bitmap(r) + i / 8;
  uint8_t bit = static_cast<uint8_t>(1u << (i % 8));
  uint8_t old = set ? __atomic_fetch_or(byte, bit, __ATOMIC_ACQ_REL)
                    : __atomic_fetch_and(byte, static_cast<uint8_t>(~bit), __ATOMIC_ACQ_REL);
  return (old & bit) != 0;
}

size_t block_index(const RunMeta* r, const void* p) {
  return static_cast<size_t>(static_cast<const char*>(p) - chunks::run_first(r)) / r->block_size;
}

void check_mark(void* p, size_t req) {
  size_t usable = usable_raw(p);
  unsigned char* c = static_cast<unsigned char*>(p);
  // usable >= req + kCheckExtra by construction; the guard keeps the compiler's bounds check calm.
  if (usable < req + kCheckExtra || usable > PTRDIFF_MAX) return;
  std::memset(c + req, kCanary, usable - 8 - req);
  uint64_t t = req ^ kTrailerKey;
  std::memcpy(c + usable - 8, &t, 8);
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) != 0 &&
      source::segment_header(a & ~source::kSegmentMask)->kind == SegmentKind::kSmall) {
    RunMeta* r = chunks::run_of(p);
    bitmap_test_and_set(r, block_index(r, p), true);
  }
}

size_t check_block(const void* p, const char* call, bool release) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const char* detail = nullptr;
  size_t detail_size = 0;
  size_t usable;
  if ((a & source::kSegmentMask) == 0) {
    usable = chunks::huge_usable_overaligned(p);
    if (usable == 0) return report("invalid free", p, nullptr, 0, call);
    detail = "huge block ";
    detail_size = usable;
  } else {
    uintptr_t base = a & ~source::kSegmentMask;
    if (!source::is_registered(base)) return report("invalid free", p, nullptr, 0, call);
    SegmentHeader* seg = source::segment_header(base);
    if (seg->magic != source::kSegmentMagic) return report("invalid free", p, nullptr, 0, call);
    switch (seg->kind) {
      case SegmentKind::kSmall: {
        // The owner may be carving this run right now: its state and bump are atomics.
        RunMeta* r = chunks::run_of(p);
        if (chunks::run_state(r) == chunks::kRunUnused || r->index == 0) {
          return report("invalid free", p, nullptr, 0, call);
        }
        detail = "size class ";
        detail_size = r->block_size;
        size_t off = static_cast<size_t>(a - reinterpret_cast<uintptr_t>(chunks::run_start(r)));
        if (off < r->colour || (off - r->colour) % r->block_size != 0) {
          return report("interior pointer free", p, detail, detail_size, call);
        }
        if (a >= reinterpret_cast<uintptr_t>(chunks::run_bump(r))) {
          return report("invalid free", p, detail, detail_size, call);
        }
        size_t i = (off - r->colour) / r->block_size;
        bool was_set = release ? bitmap_test_and_set(r, i, false)
                               : ((__atomic_load_n(chunks::run_check_bitmap(r) + i / 8,
                                                   __ATOMIC_ACQUIRE) >> (i % 8)) & 1) != 0;
        if (!was_set) return report("double free", p, detail, detail_size, call);
        usable = r->block_size;
        break;
      }
      case SegmentKind::kMedium: {
        // The owner may be splitting and merging chunks of this segment right now.
        Heap* owner = static_cast<Heap*>(source::segment_owner(seg));
        chunks::ChunkStatus st;
        {
          base::LockGuard guard(owner->check_lock);
          st = chunks::medium_classify(p);
          if (st == chunks::ChunkStatus::kInUse && release) chunks::medium_mark_pending(const_cast<void*>(p));
        }
        if (st == chunks::ChunkStatus::kOutside) return report("invalid free", p, nullptr, 0, call);
        if (st == chunks::ChunkStatus::kInterior) {
          return report("interior pointer free", p, nullptr, 0, call);
        }
        usable = chunks::medium_usable(p);
        detail = "medium chunk ";
        detail_size = usable;
        if (st == chunks::ChunkStatus::kFree) {
          return report("double free", p, detail, detail_size, call);
        }
        break;
      }
      case SegmentKind::kHuge: {
        usable = chunks::huge_usable(seg);
        detail = "huge block ";
        detail_size = usable;
        uintptr_t user = base + reinterpret_cast<chunks::HugeHeader*>(seg)->user_offset;
        if (a != user) {
          return report(a > user ? "interior pointer free" : "invalid free", p, detail, detail_size,
                        call);
        }
        break;
      }
      default:
        return report("double free", p, nullptr, 0, call);
    }
  }
  const unsigned char* c = static_cast<const unsigned char*>(p);
  uint64_t t;
  std::memcpy(&t, c + usable - 8, 8);
  size_t req = t ^ kTrailerKey;
  // Under Valgrind the write past the block was reported where it happened.
  if (req > usable - kCheckExtra) {
    if (valgrind_reports()) return usable - kCheckExtra;
    fatal_report("heap overflow", p, detail, detail_size, call);
  }
  for (size_t i = req; i < usable - 8; ++i) {
    if (c[i] != kCanary && !valgrind_reports()) {
      fatal_report("heap overflow", p, detail, detail_size, call);
    }
  }
  return req;
}

}  // namespace

void* allocate_checked(size_t size, size_t align, bool zero) {
  void* p;
  size_t usable;
  {
    VgQuiet quiet;
    Heap* h = current_heap();
    if (h == nullptr) return nullptr;
    p = alloc_raw(h, size + kCheckExtra, align, false);
    if (p == nullptr) return nullptr;
    if (zero) std::memset(p, 0, size);
    check_mark(p, size);
    usable = usable_raw(p);
  }
  if (on_valgrind()) {
    // The program owns p..p+size; the canaries and the trailer past it are the allocator's.
    os::vg_no_access(static_cast<char*>(p) + size, usable - size);
    os::vg_block_allocated(p, size, zero);
  }
  return p;
}

void deallocate_checked(void* p, const char* call) {
  // memcheck first, so a bad pointer is reported with the program's stack before the check
  // below aborts.
  if (on_valgrind()) os::vg_block_freed(p);
  VgQuiet quiet;
  if (check_block(p, call, true) != kNotABlock) free_raw(p);
}

size_t usable_checked(const void* p, const char* call) {
  if (on_valgrind()) os::vg_check_addressable(p);
  VgQuiet quiet;
  size_t req = check_block(p, call, false);
  return req != kNotABlock ? req : 0;
}

size_t realloc_size_checked(const void* p) {
  size_t req;
  {
    VgQuiet quiet;
    req = check_block(p, "realloc", false);
  }
  // memcheck reports it; realloc fails, as with its malloc
  if (req == kNotABlock) os::vg_block_freed(p);
  return req;
}

void free_checked(void* p) { deallocate(p, "free"); }

}  // namespace mpcalloc::heap
