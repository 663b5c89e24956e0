/* Larson-style server, in the shape of the classic benchmark: the main thread fills one slot
 * array per worker with 8-1000 B blocks; each worker replaces random slots (free + malloc),
 * then starts a successor thread that inherits its array and exits. So blocks are freed by
 * threads other than their allocator (the first generation frees the main thread's blocks,
 * which then sits idle), and threads come and go while memory stays live. Fixed work: a
 * number of generations of a number of replacements per lineage. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

enum { LINEAGES = 4, SLOTS = 5000, MIN_SIZE = 8, MAX_SIZE = 1000 };

typedef struct {
  unsigned char* slot[SLOTS];
  uint16_t size[SLOTS];
  rng_t rng;
  int generation;
  long ops;
  uint64_t sum;
} lineage_t;

static lineage_t lineages[LINEAGES];
static int generations;
static long per_generation;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int running = LINEAGES;

static unsigned char tag(const void* p, size_t n) { return (unsigned char)(((uintptr_t)p >> 4) ^ n); }

static void fill(lineage_t* l, size_t k) {
  size_t n = MIN_SIZE + rng_below(&l->rng, MAX_SIZE - MIN_SIZE + 1);
  unsigned char* p = xmalloc(n);
  p[0] = tag(p, n);
  p[n - 1] = (unsigned char)n;
  l->slot[k] = p;
  l->size[k] = (uint16_t)n;
}

static void check_free(lineage_t* l, size_t k) {
  unsigned char* p = l->slot[k];
  size_t n = l->size[k];
  if (p[0] != tag(p, n) || p[n - 1] != (unsigned char)n) fail("block corrupted");
  l->sum += n;
  free(p);
}

static void start(lineage_t* l);

static void* worker(void* arg) {
  lineage_t* l = arg;
  for (long i = 0; i < per_generation; i++) {
    size_t k = rng_below(&l->rng, SLOTS);
    check_free(l, k);
    fill(l, k);
    l->ops++;
  }
  if (++l->generation < generations) {
    start(l); /* the successor inherits the array; this thread ends */
  } else {
    pthread_mutex_lock(&done_lock);
    running--;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
  }
  return NULL;
}

static void start(lineage_t* l) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  if (pthread_create(&t, &a, worker, l) != 0) fail("pthread_create");
  pthread_attr_destroy(&a);
}

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  generations = (int)(8 * scale);
  if (generations < 2) generations = 2;
  per_generation = 100L * SLOTS; /* the classic benchmark's 100 rounds over the array */
  for (int i = 0; i < LINEAGES; i++) {
    lineages[i].rng.s = (uint64_t)i * 104729 + 17;
    for (int k = 0; k < SLOTS; k++) fill(&lineages[i], (size_t)k);
  }
  for (int i = 0; i < LINEAGES; i++) start(&lineages[i]);
  pthread_mutex_lock(&done_lock);
  while (running > 0) pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  long ops = 0;
  uint64_t sum = 0;
  for (int i = 0; i < LINEAGES; i++) {
    for (int k = 0; k < SLOTS; k++) check_free(&lineages[i], (size_t)k);
    ops += lineages[i].ops;
    sum += lineages[i].sum;
  }
  printf("larson_server %ld %llu\n", ops, (unsigned long long)sum);
  return 0;
}
