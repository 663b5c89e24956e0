/* The demo's solver step (one subdomain of an adaptive explicit solver), shared by the threaded
 * job (demo_solver.c) and the MPI job (demo_mpi_solver.c). */
#ifndef MPCALLOC_DEMO_SOLVER_H
#define MPCALLOC_DEMO_SOLVER_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every step the mesh is refined or coarsened, so the field and flux arrays (4-64 MiB) are
 * allocated afresh at the new size, filled from the old field, swept by a diffusion stencil and
 * the old ones freed, as adaptive codes do; around them come per-step temporaries: neighbour
 * lists (small blocks) and pack buffers (medium). Plain malloc/free, so LD_PRELOAD chooses the
 * allocator; all arithmetic runs in a fixed order, so the checksum does not depend on it. */
enum {
  kMinArrayMiB = 4,
  kMaxArrayMiB = 64,
  kSweeps = 2,          /* stencil sweeps per step */
  kLists = 4000,        /* neighbour lists per step, 16-1024 bytes each */
  kListsLive = 256,     /* of which this many are alive at once */
  kPacks = 12,          /* pack buffers per step, 16-512 KiB each */
};

typedef struct {
  uint64_t rng;
  double* u;  /* the field, n cells */
  size_t n;
  double checksum;
} subdomain_t;

static inline uint64_t solver_rng(subdomain_t* d) {
  d->rng ^= d->rng << 13;
  d->rng ^= d->rng >> 7;
  d->rng ^= d->rng << 17;
  return d->rng;
}

static inline void* solver_alloc(size_t bytes) {
  void* p = malloc(bytes);
  if (p == NULL) {
    fprintf(stderr, "demo solver: out of memory (%zu bytes)\n", bytes);
    exit(3);
  }
  return p;
}

static inline void solver_init(subdomain_t* d, uint64_t seed) {
  d->rng = seed * 0x9E3779B97F4A7C15ull + 1;
  d->n = (size_t)kMinArrayMiB << 17; /* 4 MiB of doubles */
  d->u = solver_alloc(d->n * sizeof(double));
  for (size_t i = 0; i < d->n; i++) d->u[i] = (double)((i * 7 + seed) % 1000) * 1e-3;
  d->checksum = 0;
}

/* Per-step temporaries: short-lived neighbour lists (small) and pack buffers (medium), as the
 * assembly and communication phases of real codes make them. Returns what they summed to. */
static inline double solver_temporaries(subdomain_t* d) {
  double acc = 0;
  int* live[kListsLive] = {0};
  size_t live_len[kListsLive] = {0};
  for (int k = 0; k < kLists; k++) {
    int slot = k % kListsLive;
    if (live[slot] != NULL) {
      acc += live[slot][live_len[slot] - 1];
      free(live[slot]);
    }
    size_t len = 4 + solver_rng(d) % 253; /* 16-1024 bytes of ints */
    int* list = solver_alloc(len * sizeof(int));
    for (size_t j = 0; j < len; j++) list[j] = (int)((solver_rng(d) % d->n) & 0x7fffffff);
    live[slot] = list;
    live_len[slot] = len;
  }
  for (int s = 0; s < kListsLive; s++) {
    if (live[s] != NULL) acc += d->u[(size_t)live[s][0] % d->n];
    free(live[s]);
  }
  for (int k = 0; k < kPacks; k++) {
    size_t cells = (((size_t)16 << 10) + solver_rng(d) % ((size_t)496 << 10)) / sizeof(double);
    if (cells > d->n) cells = d->n;
    double* pack = solver_alloc(cells * sizeof(double));
    size_t from = solver_rng(d) % (d->n - cells + 1);
    memcpy(pack, d->u + from, cells * sizeof(double));
    acc += pack[cells / 2];
    free(pack);
  }
  return acc;
}

/* One step: remesh to a new size, sweep, swap. `left` and `right` are the boundary values
 * (ghost cells) from the neighbours (the MPI job) or fixed (the threaded job). */
static inline void solver_step(subdomain_t* d, double left, double right) {
  size_t mib = kMinArrayMiB + solver_rng(d) % (kMaxArrayMiB - kMinArrayMiB + 1);
  size_t n = mib << 17; /* doubles in `mib` MiB */
  double* next = solver_alloc(n * sizeof(double));
  double* flux = solver_alloc(n * sizeof(double));
  for (size_t i = 0; i < n; i++) next[i] = d->u[(size_t)(((unsigned __int128)i * d->n) / n)];
  free(d->u);
  for (int s = 0; s < kSweeps; s++) {
    flux[0] = 0.25 * (left - 2 * next[0] + next[1]);
    for (size_t i = 1; i + 1 < n; i++) flux[i] = 0.25 * (next[i - 1] - 2 * next[i] + next[i + 1]);
    flux[n - 1] = 0.25 * (next[n - 2] - 2 * next[n - 1] + right);
    for (size_t i = 0; i < n; i++) next[i] += flux[i];
  }
  free(flux);
  d->u = next;
  d->n = n;
  d->checksum += solver_temporaries(d) * 1e-6 + next[n / 3] + next[n - 1];
}

#endif
