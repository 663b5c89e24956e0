/* mstress-like: random sizes (mostly small, some up to 256 KiB) with a mix of short and long
 * lifetimes, in 2 threads that also free each other's long-lived objects. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

enum { THREADS = 2, LONG_SLOTS = 20000, SHORT_SLOTS = 64 };
static void* volatile long_lived[LONG_SLOTS];
static long iters;

static size_t pick(rng_t* r) {
  uint64_t k = rng_below(r, 100);
  if (k < 80) return 8 + rng_below(r, 250);
  if (k < 97) return 256 + rng_below(r, 4000);
  return 4096 + rng_below(r, 256 * 1024);
}

static void* worker(void* arg) {
  long id = (long)arg;
  rng_t r = {(uint64_t)id * 31 + 7};
  void* shorts[SHORT_SLOTS] = {0};
  uint64_t sum = 0;
  for (long i = 0; i < iters; i++) {
    size_t n = pick(&r);
    unsigned char* p = xmalloc(n);
    p[0] = (unsigned char)n;
    p[n - 1] = (unsigned char)(n >> 3);
    if (rng_below(&r, 10) < 8) {
      size_t k = rng_below(&r, SHORT_SLOTS);
      if (shorts[k] != NULL) free(shorts[k]);
      shorts[k] = p;
    } else {
      size_t k = rng_below(&r, LONG_SLOTS);
      void* old = __atomic_exchange_n(&long_lived[k], p, __ATOMIC_ACQ_REL);
      if (old != NULL) {
        sum += ((unsigned char*)old)[0];
        free(old);
      }
    }
  }
  for (int k = 0; k < SHORT_SLOTS; k++) free(shorts[k]);
  return (void*)(uintptr_t)sum;
}

int main(int argc, char** argv) {
  iters = (long)(4e6 * workload_scale(argc, argv));
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  long live = 0;
  for (int k = 0; k < LONG_SLOTS; k++) {
    if (long_lived[k] != NULL) {
      live++;
      free(long_lived[k]);
    }
  }
  printf("mstress %ld\n", live);
  return 0;
}
