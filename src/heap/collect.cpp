// Heap maintenance: giving empty runs and segments back, periodic decay, and malloc_trim.
// Layer heap.
#include "base/options.h"
#include "heap/heap_internal.h"
#include "os/os_env.h"
#include "source/block_source.h"

namespace mpcalloc::heap {
namespace {

using chunks::Block;

// Hands the heap's cached blocks back to their runs (before collecting or abandoning).
void flush_class_lists(Heap* h) {
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    Block* b = h->class_free[cls];
    h->class_free[cls] = nullptr;
    while (b != nullptr) {
      Block* next = b->next;
      chunks::small_free_local(h->small, chunks::run_of(b), b);
      b = next;
    }
  }
}

}  // namespace

bool lazy_purge() { return base::option(base::kOptPurge) == base::kPurgeFree; }

void collect(Heap* h, bool all) {
  drain_remote(h);
  if (all) flush_class_lists(h);
  chunks::small_collect(h->small, all);
  if (all) {
    // Runs left unused inside segments that other runs keep go back too.
    chunks::small_purge(h->small, os::now_ms(), 0, lazy_purge());
    CheckGuard guard(h);
    chunks::medium_collect(h->medium);
    // What stays free inside the remaining medium segments goes back too (malloc_trim, a
    // pooled heap nobody took).
    h->medium.clock_ms = os::now_ms();
    chunks::medium_purge(h->medium, 0, lazy_purge());
  }
  h->events = 0;
}

void decay_process(uint64_t now) {
  source::decay_tick();
  decay_pooled_heaps(now, static_cast<uint64_t>(base::option(base::kOptDecayMs)));
}

void note_event_clock(Heap* h, uint64_t events) {
  uint64_t now = os::now_ms();
  uint64_t decay = static_cast<uint64_t>(base::option(base::kOptDecayMs));
  if (events < kCollectEvery && now - h->maintained_ms < decay / 2) return;
  remote_flush();  // the blocks this thread holds for other heaps go out now and then
  collect(h, false);
  h->maintained_ms = now;
  {
    // Free medium memory unused for the decay time goes back to the OS; the chunks stay.
    CheckGuard guard(h);
    h->medium.clock_ms = now;
    chunks::medium_flush_quick_older(h->medium, decay / 2);
    chunks::medium_purge(h->medium, decay, lazy_purge());
  }
  // Runs unused for the decay time, in segments that stay, give their pages back.
  chunks::small_purge(h->small, now, decay, lazy_purge());
  decay_process(now);
  ensure_background();
}

bool trim() {
  VgQuiet quiet;  // collections read the links inside free blocks
  remote_flush();
  Heap* h = t_heap;
  if (h != &g_empty_heap) collect(h, true);
  collect_pooled_heaps();
  return source::trim_cache() > 0;
}

}  // namespace mpcalloc::heap
