// Heap maintenance: giving empty runs and segments back, periodic decay, the collection of
// idle threads' heaps, and malloc_trim. Layer heap.
#include <sched.h>

#include "base/options.h"
#include "heap/heap_internal.h"
#include "os/os_barrier.h"
#include "os/os_env.h"
#include "source/block_source.h"

namespace mpcalloc::heap {
namespace {

using chunks::Block;

bool lazy_purge() { return base::option(base::kOptPurge) == base::kPurgeFree; }

// One collector of idle heaps at a time (and none across fork: the child must not inherit a
// heap lock held by a thread it does not have).
constinit base::SpinLock g_idle_lock;
std::atomic<uint64_t> g_idle_scan_ms{0};

uint64_t maintained(const Heap* h) { return __atomic_load_n(&h->maintained_ms, __ATOMIC_RELAXED); }

// The work of collect_idle_heaps on one heap (its lock held, its owner idle): what other
// threads freed to it goes back to its runs where its fast frees cannot interfere and to its
// medium chunks, the runs that emptied are released, and what has been free for the decay
// time gives its pages back, as the owner's own maintenance does.
void collect_idle(Heap* h, uint64_t now, uint64_t decay) {
  h->medium.clock_ms = now;
  drain_remote_unkeyed(h);
  chunks::small_collect_unkeyed(h->small);
  chunks::small_purge(h->small, now, decay, lazy_purge());
  chunks::medium_flush_quick_older(h->medium, decay / 2);
  chunks::medium_purge(h->medium, decay, lazy_purge());
}

}  // namespace

void collect(Heap* h, bool all) {
  OwnerSection section(h);
  collect_locked(h, all);
}

void collect_locked(Heap* h, bool all) {
  drain_remote(h);
  chunks::small_collect(h->small, all);
  if (all) {
    point_all_cells(h);  // active runs that were empty went back
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
  uint64_t decay = static_cast<uint64_t>(base::option(base::kOptDecayMs));
  decay_pooled_heaps(now, decay);
  collect_idle_heaps(now, decay);
}

void collect_idle_heaps(uint64_t now, uint64_t decay) {
  if (checking()) return;  // every run is unkeyed there, the active ones too
  uint64_t last = g_idle_scan_ms.load(std::memory_order_relaxed);
  if (now >= last && now - last < decay / 2) return;
  if (!g_idle_lock.try_lock()) return;
  g_idle_scan_ms.store(now, std::memory_order_relaxed);
  VgQuiet quiet;  // the drain reads the links inside free blocks
  // Candidates are claimed in groups, with one process-wide barrier per group.
  constexpr unsigned kGroup = 32;
  Heap* group[kGroup];
  Heap* h = all_heaps();
  while (h != nullptr) {
    unsigned n = 0;
    for (; h != nullptr && n < kGroup; h = h->all_next) {
      // A heap without a thread (pooled, or not yet adopted) has the slow key and is the
      // pool's to decay (checked again in the claim: a thread may adopt it meanwhile).
      if (__atomic_load_n(&h->small.key, __ATOMIC_RELAXED) == h->small.slow_key) continue;
      uint64_t seen = maintained(h);
      if (now < seen || now - seen < decay) continue;  // its owner keeps it
      // Nothing new since the last idle collection, which left only what ages further.
      if (h->remote.empty() && h->idle_collected_ms > seen && now - h->idle_collected_ms < decay) continue;
      h->collecting.store(1, std::memory_order_relaxed);
      group[n++] = h;
    }
    if (n == 0) break;
    bool fenced = os::heavy_barrier();
    for (unsigned i = 0; i < n; ++i) {
      Heap* g = group[i];
      // An owner inside a section is not idle; a heap adopted since the check above may
      // have been pooled again.
      uint32_t after = 0;
      if (fenced && g->busy.load(std::memory_order_acquire) == 0 &&
          __atomic_load_n(&g->small.key, __ATOMIC_RELAXED) != g->small.slow_key) {
        collect_idle(g, now, decay);
        g->idle_collected_ms = now;
        // What only the owner may touch (its keyed runs, emptied by its own frees) goes back
        // at its maintenance, which a thread that makes few slow-path calls (a rank polling
        // in MPI_Wait) would seldom reach: its next section asks for one.
        after = kMaintainRequest;
      }
      g->collecting.store(after, std::memory_order_release);
    }
  }
  g_idle_lock.unlock();
}

void OwnerSection::wait_collector(Heap* h) {
  for (unsigned spins = 0;; ++spins) {
    uint32_t c = h->collecting.load(std::memory_order_acquire);
    if (c == 0) return;
    if (c == kMaintainRequest) {
      // Not a claim: the next slow-path event runs the heap's whole maintenance.
      if (h->collecting.compare_exchange_strong(c, 0, std::memory_order_acq_rel)) {
        h->events = kCollectEvery - 1;
        return;
      }
      continue;
    }
    // A claim: the collector either backs off (it saw this section) or finishes.
    if (spins > 64) sched_yield();
    else arch::spin_pause();
  }
}

void idle_fork_prepare() { g_idle_lock.lock(); }
void idle_fork_parent() { g_idle_lock.unlock(); }
void idle_fork_child() { g_idle_lock.reset(); }

void note_event_clock(Heap* h, uint64_t events) {
  uint64_t now = os::now_ms();
  uint64_t decay = static_cast<uint64_t>(base::option(base::kOptDecayMs));
  if (events < kCollectEvery && now - h->maintained_ms < decay / 2) return;
  remote_flush();  // the blocks this thread holds for other heaps go out now and then
  collect(h, false);
  __atomic_store_n(&h->maintained_ms, now, __ATOMIC_RELAXED);
  {
    OwnerSection section(h);
    // Runs unused for the decay time, in segments that stay, give their pages back.
    chunks::small_purge(h->small, now, decay, lazy_purge());
    // Free medium memory unused for the decay time goes back to the OS; the chunks stay.
    CheckGuard guard(h);
    h->medium.clock_ms = now;
    chunks::medium_flush_quick_older(h->medium, decay / 2);
    chunks::medium_purge(h->medium, decay, lazy_purge());
  }
  decay_process(now);
  ensure_background();
}

bool trim() {
  VgQuiet quiet;  // collections read the links inside free blocks
  remote_flush();
  // The pooled heaps first: what they pass on to this thread's heap (blocks sent to a heap
  // emptied by an absorption) is back for its collection.
  collect_pooled_heaps();
  Heap* h = t_heap;
  if (h != &g_empty_heap) collect(h, true);
  return source::trim_cache() > 0;
}

}  // namespace mpcalloc::heap
