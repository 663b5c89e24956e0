// Memory crossing threads through every face: remote frees through a queue while the owners
// keep allocating, realloc by a thread that does not own the block, and heaps handed over
// when threads exit. Every block carries a pattern derived from its address that the
// receiving thread checks before it frees the block.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>

#include "faces.h"

template <typename F>
class Threads : public ::testing::Test {};

#if MPCALLOC_TEST_FACE_OVERRIDE
using ThreadFaces = ::testing::Types<OverrideFace>;
#else
using ThreadFaces = ::testing::Types<PrefixedFace>;
#endif
struct ThreadFaceNames {
  template <typename F>
  static std::string GetName(int) { return F::kName; }
};
TYPED_TEST_SUITE(Threads, ThreadFaces, ThreadFaceNames);

namespace {

struct Item {
  void* p;
  size_t n;
};

// A plain blocking queue (its own storage comes from whatever malloc the binary has).
class Queue {
 public:
  void push(Item it) {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(it);
    }
    cv_.notify_one();
  }
  // False once the queue is closed and empty.
  bool pop(Item* out) {
    std::unique_lock<std::mutex> g(m_);
    cv_.wait(g, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return false;
    *out = q_.front();
    q_.pop_front();
    return true;
  }
  void close() {
    {
      std::lock_guard<std::mutex> g(m_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Item> q_;
  bool closed_ = false;
};

}  // namespace

TYPED_TEST(Threads, RemoteFreesThroughAQueueWhileOwnersKeepAllocating) {
  using F = TypeParam;
  constexpr int kProducers = 3;
  constexpr int kConsumers = 2;
  const int per_producer = 6000 / kWorkDivisor;
  Queue queues[kConsumers];
  std::atomic<int> bad{0};
  std::atomic<int> producers_left{kProducers};
  mpcalloc_stats_t before = stats_now();

  std::vector<std::thread> ts;
  for (int c = 0; c < kConsumers; ++c) {
    ts.emplace_back([&, c] {
      Item it;
      size_t i = 0;
      while (queues[c].pop(&it)) {
        if (!check_block(it.p, it.n, it.p)) ++bad;
        if (++i % 3 == 0) {
          // realloc of a block this thread does not own, to another size (often another
          // class), then free the result.
          size_t next = it.n < 4096 ? it.n * 5 + 1000 : it.n / 3 + 1;
          void* q = F::realloc(it.p, next);
          if (q == nullptr) {
            ++bad;
            continue;
          }
          if (!check_prefix(q, next, it.n, it.p)) ++bad;
          it.p = q;
        }
        F::free(it.p);
      }
    });
  }
  for (int t = 0; t < kProducers; ++t) {
    ts.emplace_back([&, t] {
      Rng r = Rng::seeded(static_cast<uint64_t>(t) + 11);
      std::vector<Item> own;  // blocks this thread keeps, checked at the end
      for (int i = 0; i < per_producer; ++i) {
        size_t n = mixed_size(r, static_cast<size_t>(i));
        void* p = F::malloc(n);
        if (p == nullptr) {
          ++bad;
          continue;
        }
        fill_block(p, n, p);
        if (i % 4 == 0) {
          own.push_back({p, n});
        } else {
          queues[(t + i) % kConsumers].push({p, n});
        }
        if (own.size() > 200) {  // local churn: the owner also frees its own blocks
          size_t k = r.below(own.size());
          if (!check_block(own[k].p, own[k].n, own[k].p)) ++bad;
          F::free(own[k].p);
          own[k] = own.back();
          own.pop_back();
        }
      }
      for (Item& o : own) {
        if (!check_block(o.p, o.n, o.p)) ++bad;
        F::free(o.p);
      }
      if (--producers_left == 0) {
        for (auto& q : queues) q.close();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(stats_now().remote_frees, before.remote_frees);
}

TYPED_TEST(Threads, RemoteFreesAfterJoinKeepContents) {
  using F = TypeParam;
  constexpr int kThreads = 4;
  const int per_thread = 3000 / kWorkDivisor;
  std::vector<std::vector<Item>> made(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      Rng r = Rng::seeded(static_cast<uint64_t>(t) + 1);
      for (int i = 0; i < per_thread; ++i) {
        size_t n = mixed_size(r, static_cast<size_t>(i));
        void* p = F::malloc(n);
        if (p == nullptr) continue;
        fill_block(p, n, p);
        made[t].push_back({p, n});
      }
    });
  }
  for (auto& t : ts) t.join();
  ts.clear();
  for (int t = 0; t < kThreads; ++t) ASSERT_EQ(made[t].size(), static_cast<size_t>(per_thread));
  std::atomic<int> bad{0};
  // Thread t frees what thread t+1 allocated (its heap is pooled now, or reused by thread t
  // itself); every other block is reallocated first.
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      auto& items = made[(t + 1) % kThreads];
      for (size_t i = 0; i < items.size(); ++i) {
        Item it = items[i];
        if (!check_block(it.p, it.n, it.p)) ++bad;
        if (i % 2 == 0) {
          void* q = F::realloc(it.p, it.n + 100);
          if (q == nullptr || !check_block(q, it.n, it.p)) ++bad;
          if (q != nullptr) it.p = q;
        }
        F::free(it.p);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  // No remote_frees check here: the new threads may be handed the very heaps they free into.
}

TYPED_TEST(Threads, FreeingThreadExitsWhileOwnerKeepsAllocating) {
  using F = TypeParam;
  // The owner (this thread) hands a batch to a short-lived thread that frees it remotely and
  // exits, while the owner goes on allocating and checking its own live blocks.
  const int rounds = 60 / kWorkDivisor;
  Rng r = Rng::seeded(99);
  std::vector<Item> live;
  std::atomic<int> bad{0};
  mpcalloc_stats_t before = stats_now();
  size_t mapped_after_warmup = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<Item> batch;
    for (int i = 0; i < 300; ++i) {
      size_t n = mixed_size(r, static_cast<size_t>(i + 1));
      void* p = F::malloc(n);
      ASSERT_NE(p, nullptr);
      fill_block(p, n, p);
      batch.push_back({p, n});
    }
    std::thread freer([&bad, batch = std::move(batch)] {
      for (const Item& it : batch) {
        if (!check_block(it.p, it.n, it.p)) ++bad;
        F::free(it.p);
      }
      // The freeing thread also allocates a little, so it has a heap of its own to hand over.
      void* mine = F::malloc(100);
      F::free(mine);
    });
    // Meanwhile: allocate, check, free; the remote frees land in this heap's list.
    for (int i = 0; i < 400; ++i) {
      size_t n = mixed_size(r, static_cast<size_t>(i + 5));
      void* p = F::malloc(n);
      ASSERT_NE(p, nullptr);
      fill_block(p, n, p);
      live.push_back({p, n});
      if (live.size() > 500) {
        size_t k = r.below(live.size());
        ASSERT_TRUE(check_block(live[k].p, live[k].n, live[k].p)) << "round " << round;
        F::free(live[k].p);
        live[k] = live.back();
        live.pop_back();
      }
    }
    freer.join();
    if (round == 4) mapped_after_warmup = stats_now().mapped_bytes;
  }
  EXPECT_EQ(bad.load(), 0);
  for (const Item& it : live) {
    ASSERT_TRUE(check_block(it.p, it.n, it.p));
    F::free(it.p);
  }
  mpcalloc_stats_t after = stats_now();
  EXPECT_GT(after.remote_frees, before.remote_frees);
  // Remotely freed memory is drained and reused by the owner: the mapping does not grow with
  // every round (each round hands ~4 MiB to the freeing thread).
  if (rounds > 10) {
    EXPECT_LT(after.mapped_bytes, mapped_after_warmup + size_t(rounds) * 2 * kMiB)
        << "remote frees look unreclaimed";
  }
}

TYPED_TEST(Threads, ExitedThreadsHeapIsReusedAndItsMemoryFreedElsewhere) {
  using F = TypeParam;
  // Warm up so this thread and the pool exist.
  std::thread([] { F::free(F::malloc(10)); }).join();
  mpcalloc_stats_t before = stats_now();
  std::vector<Item> kept;
  for (int round = 0; round < 100; ++round) {
    std::vector<Item> made;
    std::thread([&] {
      // The pooled heap of the previous thread now belongs to this one; half of what the
      // previous threads made is still live (in `kept`) and must not be handed out again.
      for (int i = 0; i < 40; ++i) {
        size_t n = 16 + static_cast<size_t>((round * 40 + i) % 97) * 24;
        void* p = F::malloc(n);
        if (p == nullptr) return;
        fill_pattern(p, n);
        made.push_back({p, n});
      }
    }).join();
    ASSERT_EQ(made.size(), 40u);
    for (size_t i = 0; i < made.size(); ++i) {
      ASSERT_TRUE(check_pattern(made[i].p, made[i].n)) << round;
      if (i % 2 == 0) F::free(made[i].p);  // freed by a thread that did not allocate it
      else kept.push_back(made[i]);
    }
  }
  for (const Item& it : kept) {
    ASSERT_TRUE(check_pattern(it.p, it.n));
    F::free(it.p);
  }
  // 100 sequential threads share pooled heaps instead of creating one each.
  EXPECT_LE(stats_now().heap_count - before.heap_count, 2u);
}

TYPED_TEST(Threads, ThreadChurnWithCrossFrees) {
  using F = TypeParam;
  // Pairs of short-lived threads, each freeing half of what the previous pair left and
  // leaving new blocks behind. New threads often get an exited thread's stack (so the same
  // thread pointer) but another thread's pooled heap: a heap must never take a fast free for
  // a block it does not own.
  const int rounds = 150 / kWorkDivisor;
  std::mutex m;
  std::vector<Item> pool;
  std::atomic<int> bad{0};
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t) {
      ts.emplace_back([&, t] {
        Rng r = Rng::seeded(static_cast<uint64_t>(round * 2 + t) + 3);
        std::vector<Item> take;
        {
          std::lock_guard<std::mutex> g(m);
          for (size_t i = 0; i < pool.size();) {
            if (r.below(2) == 0) {
              take.push_back(pool[i]);
              pool[i] = pool.back();
              pool.pop_back();
            } else {
              ++i;
            }
          }
        }
        for (const Item& it : take) {
          if (!check_block(it.p, it.n, it.p)) ++bad;
          F::free(it.p);
        }
        std::vector<Item> mine;
        for (int i = 0; i < 60; ++i) {
          size_t n = (i % 20 == 0) ? 20000 + r.below(80000) : 1 + r.below(2000);
          void* p = F::malloc(n);
          if (p == nullptr) {
            ++bad;
            continue;
          }
          fill_block(p, n, p);
          mine.push_back({p, n});
        }
        // Free a few of its own (fast path), leave the rest.
        for (int i = 0; i < 10; ++i) {
          if (!check_block(mine.back().p, mine.back().n, mine.back().p)) ++bad;
          F::free(mine.back().p);
          mine.pop_back();
        }
        std::lock_guard<std::mutex> g(m);
        pool.insert(pool.end(), mine.begin(), mine.end());
      });
    }
    for (auto& t : ts) t.join();
    ASSERT_EQ(bad.load(), 0) << "round " << round;
  }
  for (const Item& it : pool) {
    ASSERT_TRUE(check_block(it.p, it.n, it.p));
    F::free(it.p);
  }
}

TYPED_TEST(Threads, TrimAndStatsRaceWithAllocationAndThreadExit) {
  using F = TypeParam;
  // malloc_trim and the stats walk heaps and caches that other threads are using, while
  // short-lived threads hand their heaps to the pool and blocks cross threads.
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};        // broken patterns
  std::atomic<int> bad_trim{0};   // malloc_trim results other than 0/1, torn or empty stats
  std::atomic<int> no_memory{0};  // malloc failures
  F::free(F::malloc(1));  // this thread has a heap before the trimmer looks
  std::thread trimmer([&] {
    while (!stop.load()) {
      int r = F::trim(0);
      if (r != 0 && r != 1) ++bad_trim;
      mpcalloc_stats_t s = stats_now();
      if (s.heap_count == 0 || s.huge_bytes > s.mapped_bytes || s.cached_bytes > s.mapped_bytes) {
        ++bad_trim;
      }
      std::this_thread::yield();
    }
  });
  const int rounds = 40 / kWorkDivisor;
  std::vector<Item> handed;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> ts;
    std::mutex m;
    std::vector<Item> next;
    for (int t = 0; t < 2; ++t) {
      ts.emplace_back([&, t] {
        Rng r = Rng::seeded(static_cast<uint64_t>(round * 2 + t) + 101);
        std::vector<Item> mine;
        for (int i = 0; i < 400; ++i) {
          size_t n = mixed_size(r, static_cast<size_t>(i + 3));
          void* p = F::malloc(n);
          if (p == nullptr) {
            ++no_memory;
            continue;
          }
          fill_block(p, n, p);
          mine.push_back({p, n});
          if (mine.size() > 50) {
            size_t k = r.below(mine.size());
            if (!check_block(mine[k].p, mine[k].n, mine[k].p)) ++bad;
            F::free(mine[k].p);
            mine[k] = mine.back();
            mine.pop_back();
          }
        }
        std::lock_guard<std::mutex> g(m);
        next.insert(next.end(), mine.begin(), mine.end());
      });
    }
    // The previous round's blocks are freed here while this round's threads run.
    for (const Item& it : handed) {
      if (!check_block(it.p, it.n, it.p)) ++bad;
      F::free(it.p);
    }
    for (auto& t : ts) t.join();
    handed = std::move(next);
  }
  stop = true;
  trimmer.join();
  for (const Item& it : handed) {
    if (!check_block(it.p, it.n, it.p)) ++bad;
    F::free(it.p);
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(bad_trim.load(), 0);
  EXPECT_EQ(no_memory.load(), 0);
}

TYPED_TEST(Threads, StatsAreNeverTornWhileBlocksAreMappedAndUnmapped) {
  using F = TypeParam;
  // A block larger than the cache budget is mapped at malloc and unmapped at free, so the
  // mapped and huge byte counts move together by 300 MiB each time. Read one after the other
  // without a common lock, huge_bytes could exceed mapped_bytes and mallinfo's arena
  // (mapped - huge) wrap (issue 9).
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      void* p = F::malloc(300 * kMiB);  // never touched: no page is faulted in
      F::free(p);
    }
  });
  int torn = 0;
  for (int i = 0; i < 200000 / kWorkDivisor; ++i) {
    mpcalloc_stats_t s = stats_now();
    if (s.huge_bytes > s.mapped_bytes || s.cached_bytes > s.mapped_bytes) ++torn;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(torn, 0);
}

TYPED_TEST(Threads, RemoteMediumFreesDuringOwnerChurn) {
  using F = TypeParam;
  // The owner keeps splitting and merging medium chunks in its segments while another thread
  // frees (remotely) medium blocks that live between them. Nothing the remote thread reads
  // may be torn by the owner's work (checked mode walks the chunks to validate the pointer).
  std::atomic<void*> slot{nullptr};
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::thread freer([&] {
    while (!done.load()) {
      void* p = slot.exchange(nullptr);
      if (p == nullptr) continue;
      if (!check_pattern(p, 20000)) ++bad;
      F::free(p);
    }
  });
  std::vector<void*> live(64, nullptr);
  Rng r = Rng::seeded(5);
  const int iterations = 400000 / kWorkDivisor;
  for (int i = 0; i < iterations; ++i) {
    size_t k = r.below(live.size());
    F::free(live[k]);                                  // merges with free neighbours
    live[k] = F::malloc(9000 + r.below(100000));       // splits free chunks
    ASSERT_NE(live[k], nullptr);
    if (i % 8 == 0) {
      void* p = F::malloc(20000);
      ASSERT_NE(p, nullptr);
      fill_pattern(p, 20000);
      void* old = slot.exchange(p);
      if (old != nullptr) F::free(old);  // not taken by the freer: a local free
    }
  }
  done = true;
  freer.join();
  F::free(slot.exchange(nullptr));
  for (void* p : live) F::free(p);
  EXPECT_EQ(bad.load(), 0);
}

namespace {
template <typename F>
void late_key_destructor(void* arg) {
  // Runs after mpcalloc's own thread-exit destructor (keys run in creation order): this
  // thread's heap has already gone to the pool, and it allocates again.
  auto* blocks = static_cast<std::vector<Item>*>(arg);
  for (const Item& it : *blocks) {
    if (!check_block(it.p, it.n, it.p)) std::abort();
    F::free(it.p);
  }
  for (size_t n : {size_t{24}, size_t{5000}, size_t{200000}, 3 * kMiB}) {
    void* p = F::malloc(n);
    if (p == nullptr) std::abort();
    fill_block(p, n, p);
    p = F::realloc(p, n * 2);
    if (p == nullptr) std::abort();
    F::free(p);
  }
  delete blocks;
}
}  // namespace

TYPED_TEST(Threads, AllocationInLateThreadDestructors) {
  using F = TypeParam;
  pthread_key_t key;
  ASSERT_EQ(pthread_key_create(&key, late_key_destructor<F>), 0);
  F::free(F::malloc(1));
  mpcalloc_stats_t before = stats_now();
  for (int round = 0; round < 100 / kWorkDivisor; ++round) {
    std::thread([&] {
      auto* blocks = new std::vector<Item>;
      for (size_t n : {size_t{16}, size_t{900}, size_t{30000}}) {
        void* p = F::malloc(n);
        if (p == nullptr) return;
        fill_block(p, n, p);
        blocks->push_back({p, n});
      }
      pthread_setspecific(key, blocks);
    }).join();
  }
  pthread_key_delete(key);
  // Heaps taken again in a destructor go back to the pool too: sequential threads do not
  // create a heap each.
  EXPECT_LE(stats_now().heap_count - before.heap_count, 3u);
  void* p = F::malloc(100);
  ASSERT_NE(p, nullptr);
  F::free(p);
}
