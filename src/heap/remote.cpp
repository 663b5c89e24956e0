// Remote frees: the freeing thread gathers small blocks per owner heap and sends each batch
// with one push; the owner drains its list on its slow path. Layer heap.
#include <pthread.h>

#include "heap/heap_internal.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

std::atomic<size_t> g_remote_frees{0};

namespace {

using base::MpscNode;
using chunks::Block;

// A chain of blocks freed by this thread to one other heap, not sent yet.
struct RemoteBatch {
  Heap* owner;
  MpscNode* first;
  MpscNode* last;
  size_t count;
  MpscNode* recent[kRemoteSkip];  // the last blocks added, by count modulo kRemoteSkip
};

enum : uint8_t { kUnarmed = 0, kArmed, kExiting };

// Per thread, trivially destructible (no lazily registered C++ destructor): the key's
// destructor sends what is left when the thread ends.
struct RemoteCache {
  RemoteBatch slot[kRemoteSlots];
  size_t sent;    // blocks sent in batches so far
  uint8_t state;  // kArmed: the thread-exit key is set, blocks may be held
  bool adopted;   // the thread adopted a pooled heap it freed into (at most once)
  Heap* pooled;   // a pooled heap it sent blocks to (a hint: it may have a thread by now)
};

__thread RemoteCache t_remote __attribute__((tls_model("initial-exec")));
pthread_key_t g_remote_key;
std::atomic<bool> g_remote_key_ok{false};

void push_now(Heap* owner, MpscNode* n) {
  g_remote_frees.fetch_add(1, std::memory_order_relaxed);
  owner->remote.push(n);
}

// A pooled heap this thread frees into: the one its heap may absorb when it next takes new
// memory (absorb_pooled).
inline void note_pooled(Heap* owner) {
  if (owner->in_pool.load(std::memory_order_relaxed)) t_remote.pooled = owner;
}

[[gnu::noinline]] void send(RemoteBatch* b) {
  note_pooled(b->owner);
  b->owner->remote.push_chain(b->first, b->last);
  g_remote_frees.fetch_add(b->count, std::memory_order_relaxed);
  t_remote.sent += b->count;
  *b = RemoteBatch{};
}

// A full batch sent is a slow-path event of the sender's heap: a thread that only frees what
// others made (a consumer, a worker releasing its master's data) still runs its maintenance,
// and with it the process-wide decay that collects idle owners' heaps.
// And a young thread that frees a pooled heap's blocks (a successor that inherits the data of
// a thread that has just ended) takes that heap as its own, once: its frees then are local
// and it reuses that memory at once. acquire_heap does the same when the heap is pooled at the
// thread's first malloc; here the predecessor ended later (see adopt_pooled).
[[gnu::noinline]] void send_full(RemoteBatch* b) {
  Heap* owner = b->owner;
  send(b);
  Heap* me = t_heap;
  if (me == &g_empty_heap) return;
  if (!t_remote.adopted && adopt_pooled(owner)) {
    t_remote.adopted = true;
    return;
  }
  note_event(me);
}

// The slot holds another owner's batch (sent first) or none.
[[gnu::noinline]] void start_batch(RemoteBatch* b, Heap* owner, MpscNode* n) {
  if (b->owner != nullptr) send(b);
  n->next = nullptr;
  *b = RemoteBatch{owner, n, n, 1, {n}};
}

// Heaps are 64-byte aligned records several KiB apart: a multiplicative hash of the address
// spreads them over the slots.
inline unsigned slot_of(const Heap* owner) {
  uint64_t x = reinterpret_cast<uintptr_t>(owner) >> 6;
  return static_cast<unsigned>((x * 0x9E3779B97F4A7C15ull) >> 61);
}
static_assert(kRemoteSlots == 8, "slot_of takes 3 bits");

// The first remote free of a thread arms its exit hook; after the hook ran (and before the
// key exists) blocks go out one by one.
[[gnu::noinline]] void remote_free_unarmed(Heap* owner, MpscNode* n) {
  RemoteCache& c = t_remote;
  if (c.state == kExiting || !g_remote_key_ok.load(std::memory_order_acquire) ||
      pthread_setspecific(g_remote_key, &c) != 0) {
    return push_now(owner, n);
  }
  c.state = kArmed;
  start_batch(&c.slot[slot_of(owner)], owner, n);
}

inline void prefetch_skip(const MpscNode* n) {
  __builtin_prefetch(reinterpret_cast<const RemoteNode*>(n)->skip);
}

// The last node of the stretch that starts at n: the nodes after it that lie in n's run.
MpscNode* run_stretch_end(MpscNode* n) {
  uintptr_t run = reinterpret_cast<uintptr_t>(n) >> chunks::kRunShift;
  MpscNode* last = n;
  while (last->next != nullptr && reinterpret_cast<uintptr_t>(last->next) >> chunks::kRunShift == run) {
    last = last->next;
    prefetch_skip(last);
  }
  return last;
}

// Gives h's remote list back to its runs and chunks. By the owner (`owner`) every block; by a
// collector of the idle heap, only the blocks of runs the owner's fast frees cannot touch
// (without its key): the others go back on the list, for the owner.
void drain(Heap* h, bool owner) {
  MpscNode* n = h->remote.take_all();
  MpscNode* keep_first = nullptr;
  MpscNode* keep_last = nullptr;
  while (n != nullptr) {
    prefetch_skip(n);
    source::SegmentHeader* seg = source::segment_header(source::segment_base_of(n));
    if (__builtin_expect(source::segment_owner(seg) != h, 0)) {
      // Sent here by a thread that read the owner before a heap absorbed this one's memory
      // (absorb_pooled): on to the segment's owner now.
      MpscNode* next = n->next;
      static_cast<Heap*>(source::segment_owner(seg))->remote.push(n);
      n = next;
      continue;
    }
    if (seg->kind != source::SegmentKind::kSmall) {
      MpscNode* next = n->next;
      CheckGuard guard(h);
      chunks::medium_free(h->medium, n);
      n = next;
      continue;
    }
    // A batch holds its sender's frees in reverse order, and threads tend to free blocks
    // in the order they were allocated: neighbours in the list mostly share a run, and a
    // stretch of one run goes onto the run's list in one splice.
    MpscNode* last = run_stretch_end(n);
    MpscNode* next = last->next;
    chunks::RunMeta* r = chunks::run_of(n);
    if (owner || chunks::run_owner_key(r) == h->small.slow_key) {
      chunks::small_free_chain_unkeyed(h->small, r, reinterpret_cast<Block*>(n),
                                       reinterpret_cast<Block*>(last));
    } else {
      last->next = nullptr;
      if (keep_first == nullptr) keep_first = n;
      else keep_last->next = n;
      keep_last = last;
    }
    n = next;
  }
  if (keep_first != nullptr) h->remote.push_chain(keep_first, keep_last);
}

void remote_thread_exit(void*) {
  VgQuiet quiet;  // sending a batch links its last block to the list
  remote_flush();
  t_remote.state = kExiting;  // frees from later destructors go out at once
  // A thread that freed much of other threads' memory ends: their owners may be waiting (a
  // master for its workers) and make no call that would collect it; in auto mode, the
  // background purger now runs to collect idle heaps.
  if (t_remote.sent >= kIdleHintBlocks) ensure_background(true);
}

}  // namespace

bool remote_init() {
  if (pthread_key_create(&g_remote_key, remote_thread_exit) != 0) return false;
  g_remote_key_ok.store(true, std::memory_order_release);
  return true;
}

void remote_free_small(Heap* owner, void* p) {
  MpscNode* n = static_cast<MpscNode*>(p);
  RemoteCache& c = t_remote;
  if (__builtin_expect(c.state != kArmed, 0)) return remote_free_unarmed(owner, n);
  RemoteBatch* b = &c.slot[slot_of(owner)];
  if (__builtin_expect(b->owner != owner, 0)) return start_batch(b, owner, n);
  n->next = b->first;
  MpscNode*& back = b->recent[b->count % kRemoteSkip];
  reinterpret_cast<RemoteNode*>(n)->skip = back;
  back = n;
  b->first = n;
  if (++b->count == kRemoteBatch) send_full(b);
}

void remote_free_medium(Heap* owner, void* p) {
  note_pooled(owner);
  push_now(owner, static_cast<MpscNode*>(p));
}

Heap* remote_pooled_target() {
  Heap* h = t_remote.pooled;
  t_remote.pooled = nullptr;
  return h != nullptr && h->in_pool.load(std::memory_order_relaxed) ? h : nullptr;
}

void remote_flush() {
  for (RemoteBatch& b : t_remote.slot) {
    if (b.owner != nullptr) send(&b);
  }
}

Heap* remote_pending_owner() {
  for (const RemoteBatch& b : t_remote.slot) {
    if (b.owner != nullptr) return b.owner;
  }
  return nullptr;
}

size_t remote_pending() {
  size_t n = 0;
  for (const RemoteBatch& b : t_remote.slot) n += b.count;
  return n;
}

void drain_remote(Heap* h) { drain(h, true); }

void drain_remote_unkeyed(Heap* h) { drain(h, false); }

}  // namespace mpcalloc::heap
