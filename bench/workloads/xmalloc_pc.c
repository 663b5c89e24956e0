/* xmalloc-style producer/consumer: a producer allocates objects and passes them through a
 * bounded ring to a consumer, which checks and frees them (every free is remote). One pair
 * per core of this 2-core machine; waiting threads yield so the result measures the
 * allocator, not the scheduler. */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "workload.h"

enum { PAIRS = 1, RING = 4096 };
typedef struct {
  void* volatile slot[RING];
} ring_t;
static ring_t rings[PAIRS];
static long per_producer;
static uint64_t sums[PAIRS];

static void* producer(void* arg) {
  long id = (long)arg;
  rng_t r = {(uint64_t)id + 5};
  for (long i = 0; i < per_producer; i++) {
    size_t n = 16 + rng_below(&r, 240);
    uint64_t* p = xmalloc(n);
    p[0] = (uint64_t)i;
    p[1] = n;
    void* volatile* s = &rings[id].slot[i % RING];
    while (__atomic_load_n(s, __ATOMIC_ACQUIRE) != NULL) sched_yield();
    __atomic_store_n(s, p, __ATOMIC_RELEASE);
  }
  return NULL;
}

static void* consumer(void* arg) {
  long id = (long)arg;
  uint64_t sum = 0;
  for (long i = 0; i < per_producer; i++) {
    void* volatile* s = &rings[id].slot[i % RING];
    uint64_t* p;
    while ((p = __atomic_load_n(s, __ATOMIC_ACQUIRE)) == NULL) sched_yield();
    __atomic_store_n(s, NULL, __ATOMIC_RELEASE);
    if (p[0] != (uint64_t)i) fail("out of order or corrupted");
    sum += p[1];
    free(p);
  }
  sums[id] = sum;
  return NULL;
}

int main(int argc, char** argv) {
  per_producer = (long)(4e6 * workload_scale(argc, argv));
  pthread_t t[2 * PAIRS];
  for (long i = 0; i < PAIRS; i++) {
    pthread_create(&t[2 * i], NULL, producer, (void*)i);
    pthread_create(&t[2 * i + 1], NULL, consumer, (void*)i);
  }
  for (int i = 0; i < 2 * PAIRS; i++) pthread_join(t[i], NULL);
  uint64_t total = 0;
  for (int i = 0; i < PAIRS; i++) total += sums[i];
  printf("xmalloc_pc %llu\n", (unsigned long long)total);
  return 0;
}
