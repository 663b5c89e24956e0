// Heap records and their life cycle: made from a metadata arena, adopted by a thread on its
// first allocation, handed to the pool when the thread exits and adopted again by the next
// new thread. Layer heap.
#include <new>
#include <pthread.h>
#include <sched.h>

#include "base/bits.h"
#include "base/options.h"
#include "base/size_classes.h"
#include "heap/heap_internal.h"
#include "os/os_env.h"
#include "os/os_memory.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

constinit chunks::Block* g_null_cell = nullptr;  // never written: always empty
constinit Heap g_empty_heap{&g_null_cell};
__thread Heap* t_heap __attribute__((tls_model("initial-exec"))) = &g_empty_heap;
std::atomic<size_t> g_heap_count{0};

namespace {

constexpr size_t kMetaChunk = size_t{1} << 20;

constinit base::SpinLock g_pool_lock;  // also guards the meta arena
// One pool per place: a pooled heap is adopted only by a thread of the same place, so a
// dead thread's memory is recycled on its own node.
constinit Heap* g_pool[source::kPlaces] = {};
constinit size_t g_pool_size[source::kPlaces] = {};
constinit char* g_meta_cur = nullptr;
constinit char* g_meta_end = nullptr;
std::atomic<Heap*> g_all_heaps{nullptr};
// Segments held by pooled heaps that still wait for their decay (approximate: counted when a
// heap enters the pool, uncounted when it leaves it or is collected).
std::atomic<size_t> g_pooled_bytes{0};
pthread_key_t g_key;
std::atomic<bool> g_key_ok{false};

}  // namespace

void point_cells(Heap* h, unsigned cls) {
  if (checking()) return;  // every cell stays the null cell: malloc takes the checked path
  chunks::RunMeta* r = h->small.active[cls];
  chunks::Block** cell = r != nullptr ? &chunks::run_local_free(r) : &g_null_cell;
  size_t lo = cls == 0 ? 0 : base::small_class_size(cls - 1) + 1;
  size_t hi = base::small_class_size(cls);
  for (size_t size = lo; size <= hi && size <= base::kDirectMax; ++size) h->size_cell[size] = cell;
  for (size_t i = base::kDirectMax / 256 + 1; i <= base::kSmallMax / 256; ++i) {
    if (i * 256 >= lo && i * 256 <= hi) h->big_cell[i] = cell;
  }
}

void point_all_cells(Heap* h) {
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) point_cells(h, cls);
}

namespace {

Heap* new_heap(int place) {
  Heap* h;
  {
    base::LockGuard guard(g_pool_lock);
    if (static_cast<size_t>(g_meta_end - g_meta_cur) < sizeof(Heap)) {
      void* m = os::map(kMetaChunk);
      if (m == nullptr) return nullptr;
      g_meta_cur = static_cast<char*>(m);
      g_meta_end = g_meta_cur + kMetaChunk;
    }
    h = reinterpret_cast<Heap*>(g_meta_cur);
    g_meta_cur += base::align_up(sizeof(Heap), 64);
  }
  new (h) Heap(&g_null_cell);  // no active run yet: every cell is the null cell
  // Odd, so never equal to a thread pointer.
  h->small.slow_key = reinterpret_cast<char*>(h) + 1;
  h->small.key = h->small.slow_key;
  h->small.owner = h;
  h->medium.owner = h;
  h->medium.quick_off = checking();
  h->small.check_bitmaps = checking();
  h->place = h->small.place = h->medium.place = place;
  h->huge_place = g_placement.interleave ? source::kPlaceInterleaved : place;
  Heap* head = g_all_heaps.load(std::memory_order_relaxed);
  do {
    h->all_next = head;
  } while (!g_all_heaps.compare_exchange_weak(head, h, std::memory_order_release,
                                              std::memory_order_relaxed));
  g_heap_count.fetch_add(1, std::memory_order_relaxed);
  return h;
}

}  // namespace

bool pool_init() {
  if (pthread_key_create(&g_key, thread_exit) != 0) return false;
  g_key_ok.store(true, std::memory_order_release);
  return true;
}

namespace {

// Puts h (no thread uses it now) in the pool of its place: first in line for the next new
// thread (`newest`), or last (an emptied heap: the warm ones go first).
void pool_put(Heap* h, bool newest) {
  // The heap goes to the pool warm, with its runs, segments and cached blocks: threads come
  // and go in bursts, and the next thread reuses its pages without faulting them in again.
  // If no thread adopts it within the decay time, decay_pooled_heaps gives its memory back.
  // The thread pointer may be reused by a new thread: no run may match it any more.
  {
    OwnerSection section(h);  // an idle-heap collector may be at work on it
    chunks::small_set_key(h->small, h->small.slow_key);
  }
  if (t_heap == h) t_heap = &g_empty_heap;
  uint64_t now = os::now_ms();
  // Counted before the heap is published: from then on the purger may collect it.
  size_t held = (h->small.segment_count + h->medium.segment_count) * source::kSegmentSize;
  h->pooled_bytes = held;
  size_t pooled = g_pooled_bytes.fetch_add(held, std::memory_order_relaxed) + held;
  {
    base::LockGuard guard(g_pool_lock);
    h->pooled_ms = now != 0 ? now : 1;
    h->in_pool.store(true, std::memory_order_relaxed);
    Heap** link = &g_pool[h->place];
    if (!newest) {
      while (*link != nullptr) link = &(*link)->pool_next;
    }
    h->pool_next = *link;
    *link = h;
    ++g_pool_size[h->place];
  }
  // Memory of ended threads waits in the pool: if it is more than the cache budget, the
  // background purger (auto mode) must be there to give it back should nobody adopt it.
  if (pooled > static_cast<size_t>(base::option(base::kOptCacheMax))) ensure_background(true);
}

}  // namespace

void thread_exit(void* arg) {
  VgQuiet quiet;  // collections read the links inside free blocks
  Heap* h = static_cast<Heap*>(arg);
  if (h == nullptr || h == &g_empty_heap) return;
  pool_put(h, true);
}

namespace {

// Unlinks `want` from the pool of `place` if it is there (nullptr: takes the newest).
Heap* take_pooled(int place, const Heap* want) {
  base::LockGuard guard(g_pool_lock);
  Heap** link = &g_pool[place];
  if (want != nullptr) {
    while (*link != nullptr && *link != want) link = &(*link)->pool_next;
  }
  Heap* h = *link;
  if (h != nullptr) {
    *link = h->pool_next;
    --g_pool_size[place];
    h->in_pool.store(false, std::memory_order_relaxed);
  }
  return h;
}

// The calling thread takes h (from the pool, or new) as its heap.
Heap* adopt(Heap* h) {
  h->pool_next = nullptr;
  if (h->pooled_ms != 0) g_pooled_bytes.fetch_sub(h->pooled_bytes, std::memory_order_relaxed);
  h->pooled_ms = 0;
  h->small.runs_at_adopt = h->small.runs_made;
  uint64_t now = os::now_ms();
  h->medium.clock_ms = now;
  __atomic_store_n(&h->maintained_ms, now, __ATOMIC_RELAXED);
  if (!checking()) {
    OwnerSection section(h);
    chunks::small_set_key(h->small, thread_key());
  }
  t_heap = h;
  if (g_key_ok.load(std::memory_order_acquire)) pthread_setspecific(g_key, h);
  return h;
}

void yield_to_others() { sched_yield(); }

// The heap of the thread whose blocks the caller freed before its first allocation, once it
// is pooled. Most often that thread started the caller and is ending (a worker that hands
// its data to a successor, a pool that replaces its threads): its exit pools the heap a
// moment later, and the caller that waits for it takes over the data and allocates where it
// frees. Taking the pool's newest instead took the heap of another such lineage, whose
// successor then missed its own in turn: in larson_server 43 % of the thread starts, and
// the lineages' data spread over twice as many heaps as there were threads (16 generations:
// 41 MiB peak RSS instead of 27; 200 generations: 50-76 instead of 27).
Heap* take_predecessor(int place, Heap* prefer) {
  Heap* h = take_pooled(place, prefer);
  for (unsigned i = 0; h == nullptr && prefer->place == place && i < kPredecessorWaits; ++i) {
    g_predecessor_wait();
    if (prefer->in_pool.load(std::memory_order_relaxed)) h = take_pooled(place, prefer);
  }
  return h;
}

}  // namespace

constinit PredecessorWait g_predecessor_wait = yield_to_others;

Heap* acquire_heap() {
  global_init();
  int place = thread_place();
  Heap* h = nullptr;
  if (Heap* prefer = remote_pending_owner()) h = take_predecessor(place, prefer);
  if (h == nullptr) h = take_pooled(place, nullptr);
  if (h == nullptr) h = new_heap(place);
  if (h == nullptr) return nullptr;
  return adopt(h);
}

bool adopt_pooled(Heap* want) {
  Heap* mine = t_heap;
  if (mine == &g_empty_heap || checking() || want->place != mine->place) return false;
  if (mine->small.runs_made - mine->small.runs_at_adopt >= kAdoptYoungRuns) return false;
  // in_pool is read without the pool's lock, a hint (a consumer that never allocates asks at
  // every batch it sends): take_pooled looks again under the lock.
  if (!want->in_pool.load(std::memory_order_relaxed)) return false;
  Heap* h = take_pooled(want->place, want);
  if (h == nullptr) return false;  // it has a thread
  // The new heap first: pooling the old one may start the background thread, whose creation
  // allocates on this thread, from t_heap.
  adopt(h);
  thread_exit(mine);
  return true;
}

void absorb_pooled(Heap* h) {
  Heap* want = remote_pooled_target();
  if (want == nullptr || want == h || checking() || want->place != h->place) return;
  Heap* p = take_pooled(want->place, want);
  if (p == nullptr) return;  // it has a thread again
  VgQuiet quiet;   // the drain and the bins' move read the links inside free blocks
  remote_flush();  // what this thread holds for p comes back with p's drain
  {
    OwnerSection mine(h);
    OwnerSection section(p);
    drain_remote(p);
    chunks::small_absorb(h->small, p->small);
    chunks::medium_absorb(h->medium, p->medium);
    point_all_cells(p);  // its active runs are h's partial runs now
  }
  if (p->pooled_ms != 0) g_pooled_bytes.fetch_sub(p->pooled_bytes, std::memory_order_relaxed);
  p->pooled_ms = 0;
  // Empty, back to the pool, last in line; blocks still sent to it (by threads that read the
  // old owner) are forwarded by its next drain.
  pool_put(p, false);
}

void decay_pooled_heaps(uint64_t now, uint64_t decay_ms) {
  base::LockGuard guard(g_pool_lock);
  for (Heap* pool : g_pool) {
    for (Heap* p = pool; p != nullptr; p = p->pool_next) {
      if (p->pooled_ms != 0 && now >= p->pooled_ms && now - p->pooled_ms >= decay_ms) {
        g_pooled_bytes.fetch_sub(p->pooled_bytes, std::memory_order_relaxed);
        collect(p, true);
        p->pooled_ms = 0;  // nothing left to give back until a thread uses it again
      }
    }
  }
}

void collect_pooled_heaps() {
  // Idle heaps in the pool belong to no thread: collect them under the pool lock. Their remote
  // lists first: a heap emptied by an absorption passes on what was still sent to it, maybe
  // to another pooled heap, which then has it back in time for its collection.
  base::LockGuard guard(g_pool_lock);
  for (Heap* pool : g_pool) {
    for (Heap* p = pool; p != nullptr; p = p->pool_next) {
      OwnerSection section(p);
      drain_remote(p);
    }
  }
  for (Heap* pool : g_pool) {
    for (Heap* p = pool; p != nullptr; p = p->pool_next) collect(p, true);
  }
}

Heap* all_heaps() { return g_all_heaps.load(std::memory_order_acquire); }

void pool_fork_prepare() { g_pool_lock.lock(); }
void pool_fork_parent() { g_pool_lock.unlock(); }
void pool_fork_child() { g_pool_lock.reset(); }

}  // namespace mpcalloc::heap
