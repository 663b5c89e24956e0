// NUMA placement: which place (node, or first touch) a thread's heap belongs to, moving a
// thread to the heaps of its new node, and moving a block's pages. Layer heap.
#include <cerrno>

#include "base/bits.h"
#include "base/options.h"
#include "chunks/huge.h"
#include "heap/heap_internal.h"
#include "os/os_memory.h"
#include "os/os_numa.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

constinit Placement g_placement{false, false, 0};

int thread_place() {
  if (!g_placement.numa) return g_placement.default_place;
  int node = os::numa_thread_node();
  return node >= 0 ? node : source::kPlaceAny;
}

void setup_placement() {
  long long mode = base::option(base::kOptNuma);
  int nodes = os::numa_node_count();
  bool multi = nodes > 1 && mode != base::kNumaOff;
  g_placement.numa = multi;
  g_placement.interleave = multi && mode == base::kNumaInterleave;
  g_placement.default_place = nodes > 1 ? source::kPlaceAny : 0;
  source::configure_numa({multi, mode == base::kNumaStrict, os::numa_memory_mask()});
}

int numa_nodes() { return g_placement.numa ? os::numa_node_count() : 1; }

int rebind_thread() {
  global_init();
  int place = thread_place();
  Heap* h = t_heap;
  if (h != &g_empty_heap && h->place != place) {
    // A heap of the new place first, then the old one to the pool of its place (its blocks
    // stay valid, freed remotely): pooling may start the background thread, whose creation
    // allocates on this thread, and must find a heap in t_heap.
    if (acquire_heap() != nullptr) thread_exit(h);
  }
  return g_placement.numa && place < source::kMaxNodes ? place : -1;
}

int migrate(void* p, int node) {
  if (p == nullptr || node < 0 || node >= os::kMaxNumaNodes ||
      ((os::numa_online_mask() >> node) & 1) == 0) {
    errno = EINVAL;
    return -1;
  }
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  size_t usable;
  if ((a & source::kSegmentMask) == 0) {
    usable = chunks::huge_usable_overaligned(p);
  } else {
    uintptr_t base = a & ~source::kSegmentMask;
    if (!source::is_registered(base)) {
      errno = EINVAL;
      return -1;
    }
    source::SegmentHeader* seg = source::segment_header(base);
    if (seg->kind == source::SegmentKind::kHuge) {
      // The whole mapping moves, and its place with it (it is cached there when freed).
      if (source::migrate_huge(seg, node)) return 0;
      errno = EIO;
      return -1;
    }
    usable = checking() ? usable_checked(p, "mpcalloc_migrate") : usable_raw(p);
  }
  if (usable == 0) {
    errno = EINVAL;
    return -1;
  }
  // Small and medium blocks share their segment (and maybe pages) with others: only the pages
  // holding the block move, the segment's policy stays its node's.
  uintptr_t first = base::align_down(a, os::page_size());
  uintptr_t end = base::align_up(a + usable, os::page_size());
  constexpr size_t kBatch = 64;
  void* pages[kBatch];
  int status[kBatch];
  for (uintptr_t page = first; page < end;) {
    size_t n = 0;
    for (; n < kBatch && page < end; ++n, page += os::page_size()) pages[n] = reinterpret_cast<void*>(page);
    if (!os::numa_move_pages(pages, n, node, status)) {
      errno = EIO;
      return -1;
    }
    // A page of a transparent huge page already queued with an earlier page of the same batch
    // reports -EBUSY although it moved with it: ask where such pages are now.
    bool unsure = false;
    for (size_t i = 0; i < n; ++i) unsure |= status[i] < 0 && status[i] != -ENOENT;
    if (unsure && !os::numa_page_nodes(pages, n, status)) {
      errno = EIO;
      return -1;
    }
    for (size_t i = 0; i < n; ++i) {
      // Not resident yet (-ENOENT): nothing to move, its first touch places it.
      if (status[i] != node && status[i] != -ENOENT) {
        errno = status[i] < 0 ? -status[i] : EBUSY;
        return -1;
      }
    }
  }
  return 0;
}

}  // namespace mpcalloc::heap
