// What the heap layer's files share: mode flags, the heap life cycle, maintenance, the raw
// (unchecked) routing and checked mode's hooks. Layer heap (internal: heap/*.cpp only).
#pragma once
#include <atomic>
#include <cstddef>

#include "base/spinlock.h"
#include "heap/heap.h"
#include "os/os_valgrind.h"

namespace mpcalloc::heap {

// ---- modes, set once by global_init (process.cpp) ----
extern std::atomic<bool> g_check;
inline bool checking() { return g_check.load(std::memory_order_relaxed); }
// Under Valgrind (and built with its headers): checked mode is on, and its slow paths describe
// every block to memcheck (os_valgrind.h).
extern std::atomic<bool> g_valgrind;
inline bool on_valgrind() { return g_valgrind.load(std::memory_order_relaxed); }
// Under Valgrind with checks not asked for: errors are memcheck's to report, nothing aborts.
extern std::atomic<bool> g_valgrind_reports;
inline bool valgrind_reports() { return g_valgrind_reports.load(std::memory_order_relaxed); }
// Around the allocator's own accesses to memory memcheck was told the program may not touch
// (free blocks, trailers): that thread's error reports pause. Nothing outside Valgrind.
class VgQuiet {
 public:
  VgQuiet() : on_(on_valgrind()) {
    if (on_) os::vg_quiet_begin();
  }
  ~VgQuiet() {
    if (on_) os::vg_quiet_end();
  }
  VgQuiet(const VgQuiet&) = delete;
  VgQuiet& operator=(const VgQuiet&) = delete;

 private:
  bool on_;
};
// The cell every size maps to when a heap has no thread or checks are on: always empty.
extern constinit chunks::Block* g_null_cell;
// Points the fast-path cells of class cls (every size it serves) at its active run's free
// list, or at the null cell when it has none; nothing with checks on (always the null cell).
// Called whenever the class's active run changes.
void point_cells(Heap* h, unsigned cls);
void point_all_cells(Heap* h);

// The owner's side of its heap's slow-path sections: a collector of idle heaps claims the heap
// only while no section is open, and a section that opens during a collection waits for its
// end. Asymmetric handshake: here two plain stores and a load (no atomic read-modify-write,
// no fence); the collector stores its claim, runs a barrier on every thread of the process
// (os::heavy_barrier), then reads `busy`. Either the collector sees the section open and
// backs off, or the section sees the claim and waits. The pool's collection of a pooled heap
// opens sections too. Sections do not nest.
// A collector of idle heaps leaves this in `collecting` after it collected a heap: the owner's
// next section sees it and makes its next slow-path event run the whole maintenance.
inline constexpr uint32_t kMaintainRequest = 2;
class OwnerSection {
 public:
  explicit OwnerSection(Heap* h) : h_(h) {
    h->busy.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(h->collecting.load(std::memory_order_acquire) != 0, 0)) wait_collector(h);
  }
  ~OwnerSection() { h_->busy.store(0, std::memory_order_release); }
  OwnerSection(const OwnerSection&) = delete;
  OwnerSection& operator=(const OwnerSection&) = delete;

 private:
  [[gnu::noinline]] static void wait_collector(Heap* h);
  Heap* h_;
};

// Held around medium-chunk changes in checked mode (see Heap::check_lock); nothing otherwise.
class CheckGuard {
 public:
  explicit CheckGuard(Heap* h) : h_(checking() ? h : nullptr) {
    if (h_ != nullptr) h_->check_lock.lock();
  }
  ~CheckGuard() {
    if (h_ != nullptr) h_->check_lock.unlock();
  }
  CheckGuard(const CheckGuard&) = delete;
  CheckGuard& operator=(const CheckGuard&) = delete;

 private:
  Heap* h_;
};

// ---- placement (placement.cpp) ----
struct Placement {
  bool numa;            // more than one node and MPCALLOC_NUMA != off
  bool interleave;      // huge blocks interleaved over the nodes
  int default_place;    // without NUMA: node 0 on a one-node machine, else first touch
};
extern constinit Placement g_placement;
// The place of a heap for the calling thread: its node when bound to one, else first touch.
int thread_place();
// Reads the topology (one file on a one-node machine) and decides how memory is placed.
void setup_placement();

// ---- life cycle (pool.cpp) ----
// Creates the thread key whose destructor pools a heap; global_init calls it before it
// declares the allocator ready, so no thread gets a heap whose exit goes unnoticed.
bool pool_init();
// The calling thread's heap, adopting a pooled one or making one on first use; nullptr when
// out of memory. The pooled heap adopted is the one the thread holds a remote batch for, if
// pooled (a thread that took over an ended thread's data frees into its own heap), else the
// pool's newest. When that heap still has a thread, the caller first lets it run, up to
// kPredecessorWaits times (g_predecessor_wait): a successor that its predecessor started
// just before ending gets the heap as soon as the predecessor's exit pools it.
Heap* acquire_heap();
// How the first allocation waits for the heap of the thread whose blocks it freed (above):
// sched_yield, so the ending thread runs; tests replace it.
using PredecessorWait = void (*)();
extern PredecessorWait g_predecessor_wait;
inline Heap* current_heap() {
  Heap* h = t_heap;
  return h != &g_empty_heap ? h : acquire_heap();
}
// The calling thread gives its heap to the pool and takes `want` instead, if `want` is in the
// pool of the same place and the caller is young (fewer than kAdoptYoungRuns small runs made
// since it took its heap): a thread that started before its predecessor ended (so the heap it
// frees into was not pooled yet at its first malloc) still ends up allocating where it frees.
// false (nothing changes) when `want` has a thread, the caller is not young, or checks are on.
bool adopt_pooled(Heap* want);
// Called by the owner of h (outside its sections) when h has just taken new memory (a new
// small run, a new medium segment): if the calling thread has been freeing into a pooled
// heap of the same place (an ended thread's, whose data it took over), h absorbs that heap's
// runs, chunks and segments, which then count as h's, and the emptied heap goes back to the
// pool. The blocks the thread frees there become its own frees, and the memory they free is
// reused by h instead of waiting for the pooled heap's decay while h grows (a successor that
// was not young enough to adopt the heap; the last thread of a pair freeing the other's
// data). Nothing when checks are on.
void absorb_pooled(Heap* h);
// pthread key destructor: the heap goes to the pool.
void thread_exit(void* heap);
// Collects every pooled heap (caller: trim). Takes the pool lock.
void collect_pooled_heaps();
// Collects the pooled heaps that have waited longer than `decay_ms` (their memory then goes
// back by the source's decay). Takes the pool lock.
void decay_pooled_heaps(uint64_t now, uint64_t decay_ms);
// Heaps created so far, for fork handlers and stats (a lock-free list, only ever grows).
Heap* all_heaps();
extern std::atomic<size_t> g_heap_count;
void pool_fork_prepare();
void pool_fork_parent();
void pool_fork_child();

// ---- remote frees (remote.cpp) ----
// A thread holds the small blocks it frees to other heaps in a few batches (one per owner,
// kRemoteSlots slots chosen by owner) and pushes a batch with one CAS when it reaches
// kRemoteBatch blocks, when its slot is wanted for another owner, at the thread's
// maintenance, at malloc_trim and at thread exit. So a thread freeing what another produced
// pays one contended CAS per batch instead of one per block; what it holds is bounded
// (kRemoteSlots * kRemoteBatch blocks, 2 MiB at worst, a few KiB for small objects).
inline constexpr unsigned kRemoteSlots = 8;
inline constexpr uint32_t kRemoteBatch = 32;
// Each block of a batch also records, in its second word, the block kRemoteSkip places further
// down the chain (added kRemoteSkip frees before it): the owner's drain, a walk of dependent
// loads of blocks last written on another core, prefetches that one at each step and so has
// kRemoteSkip misses in flight instead of one (mstress, two threads replacing each other's
// blocks: 0.82 -> 0.74 s CPU, tcmalloc 0.69; xmalloc_pc 1.03 -> 0.84). A hint only: a block
// without one (the first few of a batch, a block sent alone, a medium chunk) holds anything
// there, and a prefetch of a wild address does nothing.
inline constexpr unsigned kRemoteSkip = 4;
struct RemoteNode {
  base::MpscNode node;
  base::MpscNode* skip;
};
// A thread that ends after sending at least this many blocks starts the background purger in
// auto mode (see remote_thread_exit).
inline constexpr size_t kIdleHintBlocks = 4096;
// A thread that sends a full batch to a pooled heap adopts it (adopt_pooled), once, while it
// has made fewer than this many small runs in its own heap (a segment's worth): a thread
// that has just started, not one with much data of its own, whose frees would all turn remote.
inline constexpr uint32_t kAdoptYoungRuns = 64;
// Waits of a thread's first allocation for its predecessor's heap (see acquire_heap). Paid
// once per thread, and only by one that frees another thread's blocks before allocating; in
// larson_server (2 cores, 5 threads) 4 yields found the heap pooled at 796 of 800 thread
// starts, 1 yield at 486.
inline constexpr unsigned kPredecessorWaits = 4;
// Creates the key whose destructor sends a thread's batches when it ends (global_init).
bool remote_init();
// p is a block of `owner`, which is not the caller's heap.
void remote_free_small(Heap* owner, void* p);
// Medium blocks go out at once: held back they would pin much memory for little gain.
void remote_free_medium(Heap* owner, void* p);
// Sends every batch the calling thread holds.
void remote_flush();
// Blocks the calling thread holds, not sent yet (stats).
size_t remote_pending();
// The owner of a batch the calling thread holds, or nullptr.
Heap* remote_pending_owner();
// A heap in the pool that the calling thread has sent blocks to since the last call, or
// nullptr (absorb_pooled).
Heap* remote_pooled_target();
// Owner only, in a section: takes its remote list and gives the blocks back to their runs (or
// chunks). Runs that come back from full stay without the fast-free key (see
// chunks::small_free_chain_unkeyed).
void drain_remote(Heap* h);
// The same for a collector that is not the owner (in its claim): medium blocks and
// the small blocks of runs without the fast-free key go back to their chunks and runs; the
// blocks of runs the owner's fast frees may touch go back on the list for the owner.
void drain_remote_unkeyed(Heap* h);

// ---- maintenance (collect.cpp) ----
// Drains remote frees and releases empty runs; `all`: also the cached blocks, the active runs
// and the medium segments. Takes the heap's lock; collect_locked is for a caller holding it.
void collect(Heap* h, bool all);
void collect_locked(Heap* h, bool all);
// Counts a slow-path event (refills, frees into full runs, medium and huge frees); every so
// many, or when the decay time has passed (checked every kClockEvery events), the heap's empty
// runs go back, the caches decay and idle pooled heaps are collected. The count is inline:
// the look at the clock saves and restores registers that a count alone does not need.
inline constexpr uint64_t kCollectEvery = 4096;    // slow-path events between collections
inline constexpr uint64_t kClockEvery = 64;        // events between looks at the clock
[[gnu::noinline]] void note_event_clock(Heap* h, uint64_t events);
inline void note_event(Heap* h) {
  uint64_t events = ++h->events;
  if (__builtin_expect(events % kClockEvery == 0, 0)) note_event_clock(h, events);
}
inline constexpr uint64_t kCollectBeforeHuge = 64;  // a new huge block first collects after this
inline constexpr uint32_t kNewRunsBeforeCollect = 16;  // a new small run, after at least this
                                                      // many (see refill in route.cpp)
// Process-wide decay: the source's caches, the idle pooled heaps and the heaps of idle threads.
// The background thread calls it too.
void decay_process(uint64_t now);
// A thread that waits (in MPI, at a barrier, for its workers) makes no slow-path call, so its
// heap's maintenance does not run: the blocks other threads free to it wait in its remote
// list, and the runs they empty stay resident, for as long as it waits. At most every half
// decay time, this collects every heap whose owner has not maintained it for the decay time
// and that is not inside a section (OwnerSection); heaps without a thread are the pool's.
// Blocks of runs without the fast-free key go back to their runs, the runs that empty are
// released (their segments, if empty, go to the source), and unused runs and free medium
// chunks give their pages back after the decay time. What the owner's fast paths may touch
// (its active and keyed runs, its cached blocks) stays the owner's.
void collect_idle_heaps(uint64_t now, uint64_t decay);
void idle_fork_prepare();
void idle_fork_parent();
void idle_fork_child();

// ---- background purger (background.cpp) ----
// Starts the background thread if it is not running (lazily: at the first heap, and after fork
// in the child): with MPCALLOC_BACKGROUND=1 always; in auto mode once the cache has passed
// its floor, or when `needed` (ended threads' heaps hold more than the cache budget, or a
// thread that freed many blocks of other threads ended: their owners may idle). Call
// where a nested malloc is harmless.
void ensure_background(bool needed = false);
void background_fork_child();

// ---- routing without checks (route.cpp) ----
void* alloc_raw(Heap* h, size_t size, size_t align, bool zero);
void free_raw(void* p);
size_t usable_raw(const void* p);
extern std::atomic<size_t> g_remote_frees;

// ---- checked mode (checked.cpp) ----
// What allocate, deallocate, usable_size and reallocate do with checks on (also under
// memcheck, whose client requests they make). A bad pointer is reported and aborts, except
// under Valgrind without MPCALLOC_CHECK=1 (valgrind_reports()): memcheck has reported it, and
// as with memcheck's own malloc the program goes on, the memory left alone.
inline constexpr size_t kCheckExtra = 16;  // canary + trailer bytes added to every block
inline constexpr size_t kNotABlock = ~size_t{0};
void* allocate_checked(size_t size, size_t align, bool zero);
void deallocate_checked(void* p, const char* call);
// The requested size of live block p, 0 for a bad pointer under memcheck.
size_t usable_checked(const void* p, const char* call);
// The requested size of p, for realloc's copy; kNotABlock for a bad pointer under memcheck.
size_t realloc_size_checked(const void* p);
void free_checked(void* p);

}  // namespace mpcalloc::heap
