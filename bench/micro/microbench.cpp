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

// Blocks allocated here are freed by a second thread (remote free), then reclaimed.
static void BM_RemoteFree(benchmark::State& state) {
  std::vector<void*> batch(1000);
  for (auto _ : state) {
    for (auto& p : batch) p = std::malloc(64);
    std::thread([&] {
      for (auto* p : batch) std::free(p);
    }).join();
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_RemoteFree);

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
