/* Shared by the benchmark workloads: a seeded PRNG, a scale argument, and a failure exit
 * that the runner notices. Workloads use plain malloc/free so LD_PRELOAD picks the
 * allocator. Each prints one checksum line that must not depend on the allocator. */
#ifndef MPCALLOC_BENCH_WORKLOAD_H
#define MPCALLOC_BENCH_WORKLOAD_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t* r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static inline uint64_t rng_below(rng_t* r, uint64_t n) { return rng_next(r) % n; }

/* Scale factor from argv[1] (default 1.0): the workload does about `scale` times its
 * default amount of work. */
static inline double workload_scale(int argc, char** argv) {
  return argc > 1 ? atof(argv[1]) : 1.0;
}

static inline void* xmalloc(size_t n) {
  void* p = malloc(n);
  if (p == NULL && n != 0) {
    fprintf(stderr, "workload: out of memory (%zu bytes)\n", n);
    exit(3);
  }
  return p;
}

static inline void fail(const char* what) {
  fprintf(stderr, "workload: CHECK FAILED: %s\n", what);
  exit(4);
}
#endif
