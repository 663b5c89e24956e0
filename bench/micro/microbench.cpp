// Micro-benchmarks of mpcalloc (linked, so malloc is ours): malloc/free pairs per size
// class, frees of another thread's blocks, realloc growth.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "mpcalloc/mpcalloc.h"

static void BM_MallocFreePair(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  void* keep = std::malloc(n);
  for (auto _ : state) {
    void* p = std::malloc(n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  std::free(keep);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MallocFreePair)->Arg(16)->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Arg(512)
    ->Arg(1024)->Arg(4096)->Arg(8192)->Arg(16384)->Arg(65536)->Arg(262144)->Arg(1 << 20)
    ->Arg(4 << 20);

static void BM_BatchMallocThenFree(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  std::vector<void*> v(1000);
  for (auto _ : state) {
    for (auto& p : v) p = std::malloc(n);
    benchmark::DoNotOptimize(v.data());
    for (auto* p : v) std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_BatchMallocThenFree)->Arg(24)->Arg(200)->Arg(3000)->Arg(40000);

// Remote free: blocks allocated here are freed by a persistent second thread (pushed onto
// this thread's remote list), and reclaimed by the next round's mallocs. The hand-over uses
// std::atomic wait/notify, so neither thread spins. Real time: the work is split over two threads.
static void BM_RemoteFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  constexpr int kBatch = 1000;
  std::vector<void*> batch(kBatch);
  std::atomic<int> phase{0};  // 0: owner's turn, 1: freer's turn, 2: stop
  std::thread freer([&] {
    for (;;) {
      phase.wait(0, std::memory_order_acquire);
      if (phase.load(std::memory_order_acquire) == 2) return;
      for (void* p : batch) std::free(p);
      phase.store(0, std::memory_order_release);
      phase.notify_one();
    }
  });
  for (auto _ : state) {
    for (auto& p : batch) p = std::malloc(size);
    benchmark::DoNotOptimize(batch.data());
    phase.store(1, std::memory_order_release);
    phase.notify_one();
    phase.wait(1, std::memory_order_acquire);
  }
  phase.store(2, std::memory_order_release);
  phase.notify_one();
  freer.join();
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_RemoteFree)->Arg(64)->Arg(1024)->Arg(16384)->UseRealTime();

static void BM_ReallocGrowth(benchmark::State& state) {
  size_t limit = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    size_t n = 16;
    void* p = std::malloc(n);
    while (n < limit) {
      n += n / 2 + 16;
      p = std::realloc(p, n);
      benchmark::DoNotOptimize(p);
    }
    std::free(p);
  }
}
BENCHMARK(BM_ReallocGrowth)->Arg(1 << 16)->Arg(1 << 22)->Arg(1 << 26);

BENCHMARK_MAIN();
