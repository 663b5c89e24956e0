// Thread heaps: slow paths, remote-free draining, the heap pool, checked mode, init and fork.
#include "heap/heap.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <pthread.h>

#include "base/bits.h"
#include "base/options.h"
#include "base/spinlock.h"
#include "chunks/huge.h"
#include "os/os_memory.h"
#include "os/os_message.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

namespace {
constinit chunks::Block* g_null_cell = nullptr;  // never written: always empty
}  // namespace

constinit Heap g_empty_heap{&g_null_cell};
__thread Heap* t_heap __attribute__((tls_model("initial-exec"))) = &g_empty_heap;

namespace {

using chunks::Block;
using chunks::RunMeta;
using source::SegmentHeader;
using source::SegmentKind;

constexpr uint64_t kCollectEvery = 4096;  // slow-path events between collections of empty runs
constexpr uint64_t kCollectBeforeHuge = 64;  // a new huge block first collects after this many
constexpr size_t kMetaChunk = size_t{1} << 20;

std::atomic<bool> g_initialized{false};
std::atomic<bool> g_registered{false};
constinit base::SpinLock g_init_lock;
// Written once at init; read everywhere (also by threads that only free, before any init
// of theirs), so a relaxed atomic.
std::atomic<bool> g_check{false};
inline bool checking() { return g_check.load(std::memory_order_relaxed); }
pthread_key_t g_key;
std::atomic<bool> g_key_ok{false};

constinit base::SpinLock g_pool_lock;  // also guards the meta arena
constinit Heap* g_pool = nullptr;
constinit size_t g_pool_size = 0;
constexpr size_t kIdleHeapsKeptWarm = 4;
constinit char* g_meta_cur = nullptr;
constinit char* g_meta_end = nullptr;
std::atomic<Heap*> g_all_heaps{nullptr};
std::atomic<size_t> g_heap_count{0};
std::atomic<size_t> g_remote_frees{0};

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

// ---------------------------------------------------------------- heap life cycle

// Points the fast-path size cells at the class lists (or at the null cell in check mode).
void set_size_cells(Heap* h) {
  for (size_t size = 0; size <= base::kDirectMax; ++size) {
    h->size_cell[size] = checking() ? &g_null_cell : &h->class_free[base::small_class_of(size)];
  }
  for (size_t i = 0; i <= base::kSmallMax / 256; ++i) {
    size_t size = i * 256;
    bool used = size > base::kDirectMax && !checking();
    h->big_cell[i] = used ? &h->class_free[base::small_class_of(size)] : &g_null_cell;
  }
}

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

Heap* new_heap() {
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
  new (h) Heap(&g_null_cell);
  set_size_cells(h);
  // Odd, so never equal to a thread pointer.
  h->small.slow_key = reinterpret_cast<char*>(h) + 1;
  h->small.key = h->small.slow_key;
  h->small.owner = h;
  h->medium.owner = h;
  h->medium.quick_off = checking();
  h->small.check_bitmaps = checking();
  Heap* head = g_all_heaps.load(std::memory_order_relaxed);
  do {
    h->all_next = head;
  } while (!g_all_heaps.compare_exchange_weak(head, h, std::memory_order_release,
                                              std::memory_order_relaxed));
  g_heap_count.fetch_add(1, std::memory_order_relaxed);
  return h;
}

void drain_remote(Heap* h) {
  base::MpscNode* n = h->remote.take_all();
  while (n != nullptr) {
    base::MpscNode* next = n->next;
    SegmentHeader* seg = source::segment_header(source::segment_base_of(n));
    if (seg->kind == SegmentKind::kSmall) {
      chunks::small_free_local(h->small, chunks::run_of(n), reinterpret_cast<Block*>(n));
    } else {
      CheckGuard guard(h);
      chunks::medium_free(h->medium, n);
    }
    n = next;
  }
}

void collect(Heap* h, bool all) {
  drain_remote(h);
  if (all) flush_class_lists(h);
  chunks::small_collect(h->small, all);
  if (all) {
    CheckGuard guard(h);
    chunks::medium_collect(h->medium);
  }
  h->events = 0;
}

void thread_exit(void* arg) {
  Heap* h = static_cast<Heap*>(arg);
  if (h == nullptr || h == &g_empty_heap) return;
  // A heap going to the pool keeps its active runs and cached blocks for the next thread
  // (threads come and go in bursts); beyond a few idle heaps, it gives back what is free.
  size_t idle;
  {
    base::LockGuard guard(g_pool_lock);
    idle = g_pool_size;
  }
  collect(h, idle >= kIdleHeapsKeptWarm);
  // The thread pointer may be reused by a new thread: no run may match it any more.
  chunks::small_set_key(h->small, h->small.slow_key);
  if (t_heap == h) t_heap = &g_empty_heap;
  base::LockGuard guard(g_pool_lock);
  h->pool_next = g_pool;
  g_pool = h;
  ++g_pool_size;
}

Heap* acquire_heap() {
  global_init();
  Heap* h;
  {
    base::LockGuard guard(g_pool_lock);
    h = g_pool;
    if (h != nullptr) {
      g_pool = h->pool_next;
      --g_pool_size;
    }
  }
  if (h == nullptr) h = new_heap();
  if (h == nullptr) return nullptr;
  h->pool_next = nullptr;
  if (!checking()) chunks::small_set_key(h->small, thread_key());
  t_heap = h;
  if (g_key_ok.load(std::memory_order_acquire)) pthread_setspecific(g_key, h);
  return h;
}

inline Heap* current_heap() {
  Heap* h = t_heap;
  return h != &g_empty_heap ? h : acquire_heap();
}

// ---------------------------------------------------------------- raw allocation

// Counts a slow-path event; every kCollectEvery of them, empty runs go back (the fast paths
// keep no counters, so emptiness is found by these periodic walks).
void note_event(Heap* h) {
  if (++h->events >= kCollectEvery) {
    collect(h, false);
    source::decay_tick();
  }
}

[[gnu::noinline]] Block* refill(Heap* h, unsigned cls) {
  drain_remote(h);
  note_event(h);
  return chunks::small_refill(h->small, cls);
}

inline void* small_alloc(Heap* h, unsigned cls) {
  Block* b = h->class_free[cls];
  if (b == nullptr) {
    b = refill(h, cls);
    if (b == nullptr) return nullptr;
  } else {
    chunks::small_check_block(b);  // slow path only: sizes above the fast path's, or checks on
  }
  h->class_free[cls] = b->next;
  return b;
}

struct Raw {
  void* p;
  bool is_zero;
};

Raw alloc_raw(Heap* h, size_t size, size_t align) {
  if (align <= 16) {
    if (size <= base::kSmallMax) return {small_alloc(h, base::small_class_of(size)), false};
  } else if (align < source::kSegmentSize) {
    // Power-of-two classes are aligned to their size inside a 64 KiB-aligned run.
    size_t rounded = base::next_pow2(size > align ? size : align);
    if (rounded <= base::kSmallMax) return {small_alloc(h, base::small_class_of(rounded)), false};
  } else {
    return {chunks::huge_alloc_overaligned(size, align), true};
  }
  if (size <= chunks::kMediumMax) {
    drain_remote(h);
    CheckGuard guard(h);
    return {chunks::medium_alloc(h->medium, size, align), false};
  }
  // A program that freed many small blocks and now asks for big ones: give the empty runs
  // back first, so their memory is reused or returned instead of adding to the peak.
  if (h->events >= kCollectBeforeHuge) collect(h, false);
  chunks::HugeResult r = chunks::huge_alloc(size, align, false);
  return {r.p, r.is_zero};
}

void* alloc_raw_zeroable(Heap* h, size_t size, size_t align, bool zero) {
  if (zero && size > chunks::kMediumMax && align < source::kSegmentSize) {
    chunks::HugeResult r = chunks::huge_alloc(size, align, true);
    if (r.p != nullptr && !r.is_zero) std::memset(r.p, 0, size);
    return r.p;
  }
  Raw r = alloc_raw(h, size, align);
  if (zero && r.p != nullptr && !r.is_zero) std::memset(r.p, 0, size);
  return r.p;
}

// ---------------------------------------------------------------- raw free

void free_remote(Heap* owner, void* p) {
  g_remote_frees.fetch_add(1, std::memory_order_relaxed);
  owner->remote.push(static_cast<base::MpscNode*>(p));
}

void free_raw(void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) == 0) {
    if (p != nullptr) chunks::huge_free_overaligned(p);
    return;
  }
  SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
  switch (seg->kind) {
    case SegmentKind::kSmall: {
      Heap* owner = static_cast<Heap*>(seg->owner);
      if (owner == t_heap) {
        RunMeta* r = chunks::run_of(p);
        bool was_full = r->state == chunks::kRunFull;
        chunks::small_free_local(owner->small, r, static_cast<Block*>(p));
        if (was_full) note_event(owner);
      } else {
        free_remote(owner, p);
      }
      return;
    }
    case SegmentKind::kMedium: {
      Heap* owner = static_cast<Heap*>(seg->owner);
      if (owner == t_heap) {
        CheckGuard guard(owner);
        chunks::medium_free(owner->medium, p);
      } else {
        free_remote(owner, p);
      }
      return;
    }
    case SegmentKind::kHuge:
      chunks::huge_free(seg);
      return;
    case SegmentKind::kNone:
      return;
  }
}

size_t usable_raw(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & source::kSegmentMask) == 0) return p == nullptr ? 0 : chunks::huge_usable_overaligned(p);
  const SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
  switch (seg->kind) {
    case SegmentKind::kSmall: return chunks::run_of(p)->block_size;
    case SegmentKind::kMedium: return chunks::medium_usable(p);
    case SegmentKind::kHuge: return chunks::huge_usable(seg);
    case SegmentKind::kNone: return 0;
  }
  return 0;
}

// ---------------------------------------------------------------- checked mode
// Every block carries, at the end of its usable space, its requested size (xor a key), and
// canary bytes between the request and that trailer. Small runs keep an occupancy bitmap.

constexpr uint64_t kTrailerKey = 0x5a17c0de5a17c0deull;
constexpr unsigned char kCanary = 0xab;
constexpr size_t kCheckExtra = 16;

[[noreturn]] void report(const char* what, const void* p, const char* detail, size_t detail_size,
                         const char* call) {
  os::Message m;
  m.text("mpcalloc: ").text(what).text(" of ").hex(reinterpret_cast<uintptr_t>(p));
  if (detail != nullptr) m.text(" (").text(detail).dec(detail_size).text(" B)");
  m.text(" in ").text(call).text("()");
  os::fatal(m);
}

bool bitmap_test_and_set(RunMeta* r, size_t i, bool set) {
  uint8_t* byte = chunks::run_check_bitmap(r) + i / 8;
  uint8_t bit = static_cast<uint8_t>(1u << (i % 8));
  uint8_t old = set ? __atomic_fetch_or(byte, bit, __ATOMIC_ACQ_REL)
                    : __atomic_fetch_and(byte, static_cast<uint8_t>(~bit), __ATOMIC_ACQ_REL);
  return (old & bit) != 0;
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
    bitmap_test_and_set(r, static_cast<size_t>(c - reinterpret_cast<unsigned char*>(chunks::run_start(r))) / r->block_size, true);
  }
}

// Validates p as a live block; returns its requested size. Reports and aborts otherwise.
// `release`: the block is being freed (clears its occupancy bit).
size_t check_block(const void* p, const char* call, bool release) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const char* detail = nullptr;
  size_t detail_size = 0;
  size_t usable;
  if ((a & source::kSegmentMask) == 0) {
    usable = chunks::huge_usable_overaligned(p);
    if (usable == 0) report("invalid free", p, nullptr, 0, call);
    detail = "huge block ";
    detail_size = usable;
  } else {
    uintptr_t base = a & ~source::kSegmentMask;
    if (!source::is_registered(base)) report("invalid free", p, nullptr, 0, call);
    SegmentHeader* seg = source::segment_header(base);
    if (seg->magic != source::kSegmentMagic) report("invalid free", p, nullptr, 0, call);
    switch (seg->kind) {
      case SegmentKind::kSmall: {
        RunMeta* r = chunks::run_of(p);
        if (r->state == chunks::kRunUnused || r->index == 0) report("invalid free", p, nullptr, 0, call);
        detail = "size class ";
        detail_size = r->block_size;
        size_t off = static_cast<size_t>(a - reinterpret_cast<uintptr_t>(chunks::run_start(r)));
        if (off % r->block_size != 0) report("interior pointer free", p, detail, detail_size, call);
        if (a >= reinterpret_cast<uintptr_t>(r->bump)) report("invalid free", p, detail, detail_size, call);
        size_t i = off / r->block_size;
        bool was_set = release ? bitmap_test_and_set(r, i, false)
                               : ((chunks::run_check_bitmap(r)[i / 8] >> (i % 8)) & 1) != 0;
        if (!was_set) report("double free", p, detail, detail_size, call);
        usable = r->block_size;
        break;
      }
      case SegmentKind::kMedium: {
        // The owner may be splitting and merging chunks of this segment right now.
        Heap* owner = static_cast<Heap*>(seg->owner);
        chunks::ChunkStatus st;
        {
          base::LockGuard guard(owner->check_lock);
          st = chunks::medium_classify(p);
          if (st == chunks::ChunkStatus::kInUse && release) chunks::medium_mark_pending(const_cast<void*>(p));
        }
        if (st == chunks::ChunkStatus::kOutside) report("invalid free", p, nullptr, 0, call);
        if (st == chunks::ChunkStatus::kInterior) report("interior pointer free", p, nullptr, 0, call);
        usable = chunks::medium_usable(p);
        detail = "medium chunk ";
        detail_size = usable;
        if (st == chunks::ChunkStatus::kFree) report("double free", p, detail, detail_size, call);
        break;
      }
      case SegmentKind::kHuge: {
        usable = chunks::huge_usable(seg);
        detail = "huge block ";
        detail_size = usable;
        uintptr_t user = base + reinterpret_cast<chunks::HugeHeader*>(seg)->user_offset;
        if (a != user) report(a > user ? "interior pointer free" : "invalid free", p, detail, detail_size, call);
        break;
      }
      default:
        report("double free", p, nullptr, 0, call);
    }
  }
  const unsigned char* c = static_cast<const unsigned char*>(p);
  uint64_t t;
  std::memcpy(&t, c + usable - 8, 8);
  size_t req = t ^ kTrailerKey;
  if (req > usable - kCheckExtra) report("heap overflow", p, detail, detail_size, call);
  for (size_t i = req; i < usable - 8; ++i) {
    if (c[i] != kCanary) report("heap overflow", p, detail, detail_size, call);
  }
  return req;
}

}  // namespace

// ---------------------------------------------------------------- entry points

void* malloc_slow(size_t size) {
  Heap* h = t_heap;
  // The common miss: the class list ran dry and the active run has blocks its owner freed.
  // Swap them in without the general machinery (drains and collections happen when no such
  // blocks are there, or when other threads have freed blocks to us).
  if (size <= base::kSmallMax && h->remote.empty() && !checking()) {
    unsigned cls = base::small_class_of(size);
    RunMeta* r = h->small.active[cls];
    if (r != nullptr) {
      if (Block* b = chunks::small_take_local(r)) {
        h->class_free[cls] = b->next;
        return b;
      }
    }
  }
  h = current_heap();
  void* p = nullptr;
  if (h != nullptr) {
    if (checking()) p = allocate(size, 16, false);
    else if (size <= base::kSmallMax) p = small_alloc(h, base::small_class_of(size));
    else if (size <= PTRDIFF_MAX) p = alloc_raw(h, size, 16).p;
  }
  if (p == nullptr) errno = ENOMEM;
  return p;
}

void free_slow(void* p) { deallocate(p, "free"); }

void free_unchecked(void* p) { free_fast(p); }
namespace {
void free_checked(void* p) { deallocate(p, "free"); }
}  // namespace
constinit FreeFn g_free = free_unchecked;

void* allocate(size_t size, size_t align, bool zero) {
  Heap* h = current_heap();
  if (h == nullptr) return nullptr;
  if (size > PTRDIFF_MAX - kCheckExtra) return nullptr;
  if (!checking()) return alloc_raw_zeroable(h, size, align, zero);
  void* p = alloc_raw_zeroable(h, size + kCheckExtra, align, false);
  if (p == nullptr) return nullptr;
  if (zero) std::memset(p, 0, size);
  check_mark(p, size);
  return p;
}

void deallocate(void* p, const char* call) {
  if (p == nullptr) return;
  if (checking()) check_block(p, call, true);
  free_raw(p);
}

size_t usable_size(const void* p) {
  if (p == nullptr) return 0;
  if (checking()) return check_block(p, "malloc_usable_size", false);
  return usable_raw(p);
}

void* reallocate(void* p, size_t size) {
  if (p == nullptr) return allocate(size, 16, false);
  if (size > PTRDIFF_MAX - kCheckExtra) return nullptr;
  size_t old_usable;
  if (checking()) {
    old_usable = check_block(p, "realloc", false);
  } else {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if ((a & source::kSegmentMask) != 0) {
      SegmentHeader* seg = source::segment_header(a & ~source::kSegmentMask);
      switch (seg->kind) {
        case SegmentKind::kSmall: {
          size_t bs = chunks::run_of(p)->block_size;
          if (size <= bs && (size > bs / 2 || bs <= 16)) return p;
          break;
        }
        case SegmentKind::kMedium:
          if (size > base::kSmallMax && size <= chunks::kMediumMax && seg->owner == t_heap &&
              chunks::medium_resize_in_place(static_cast<Heap*>(seg->owner)->medium, p, size)) {
            return p;
          }
          break;
        case SegmentKind::kHuge:
          if (size > chunks::kMediumMax) {
            void* q = chunks::huge_resize(seg, size);
            if (q != nullptr) return q;
            // mremap could not (e.g. the block spans two kernel mappings): copy instead.
          }
          break;
        case SegmentKind::kNone:
          break;
      }
    }
    old_usable = usable_raw(p);
  }
  void* q = allocate(size, 16, false);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_usable < size ? old_usable : size);
  deallocate(p, "realloc");
  return q;
}

bool trim() {
  Heap* h = t_heap;
  if (h != &g_empty_heap) collect(h, true);
  // Idle heaps in the pool belong to no thread: collect them under the pool lock.
  {
    base::LockGuard guard(g_pool_lock);
    for (Heap* p = g_pool; p != nullptr; p = p->pool_next) collect(p, true);
  }
  return source::trim_cache() > 0;
}

bool check_enabled() { return checking(); }

HeapStats stats() {
  return {g_heap_count.load(std::memory_order_relaxed), g_remote_frees.load(std::memory_order_relaxed)};
}

namespace {
// Checked mode: another thread may be validating a free under some heap's check lock (the
// forking thread's own heap included); the child must not inherit it held. Order: pool lock,
// then check locks (collect under the pool lock takes them), then the source's.
void for_check_locks(void (base::SpinLock::*op)()) {
  if (!checking()) return;
  for (Heap* h = g_all_heaps.load(std::memory_order_acquire); h != nullptr; h = h->all_next) {
    (h->check_lock.*op)();
  }
}

void fork_prepare() {
  g_pool_lock.lock();
  for_check_locks(&base::SpinLock::lock);
  chunks::huge_fork_prepare();
  source::fork_prepare();
}
void fork_parent() {
  source::fork_parent();
  chunks::huge_fork_parent();
  for_check_locks(&base::SpinLock::unlock);
  g_pool_lock.unlock();
}
void fork_child() {
  source::fork_child();
  chunks::huge_fork_child();
  for_check_locks(&base::SpinLock::reset);
  g_pool_lock.reset();
}

void print_options() {
  for (unsigned i = 0; i < base::kOptCount; ++i) {
    const base::OptionDesc& d = base::option_desc(i);
    os::Message m;
    m.text("mpcalloc: option ").text(d.env).text("=").dec(static_cast<uint64_t>(base::option(i)));
    m.text("\n").write_to(2);
  }
}
}  // namespace

void global_init() {
  if (g_initialized.load(std::memory_order_acquire)) return;
  {
    base::LockGuard guard(g_init_lock);
    if (!g_initialized.load(std::memory_order_relaxed)) {
      base::options_load();
      g_check.store(base::option(base::kOptCheck) != 0, std::memory_order_relaxed);
      if (checking()) __atomic_store_n(&g_free, &free_checked, __ATOMIC_RELAXED);
      source::configure({static_cast<size_t>(base::option(base::kOptCacheMax)),
                         static_cast<uint64_t>(base::option(base::kOptDecayMs))});
      g_initialized.store(true, std::memory_order_release);
    }
  }
  // Registrations that may allocate run after the flag is set, so a nested malloc proceeds.
  bool expected = false;
  if (g_registered.compare_exchange_strong(expected, true)) {
    if (pthread_key_create(&g_key, thread_exit) == 0) g_key_ok.store(true, std::memory_order_release);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (base::option(base::kOptVerbose) != 0) print_options();
  }
}

}  // namespace mpcalloc::heap
