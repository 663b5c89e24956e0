/* glibc bench-malloc-thread: each thread keeps a working set of random-size blocks and
 * replaces random ones in a loop. */
#include <pthread.h>

#include "workload.h"

enum { THREADS = 2, WORKSET = 4096 };
static long iters;

static void* worker(void* arg) {
  rng_t r = {(uint64_t)(long)arg * 1234567 + 1};
  void* ws[WORKSET] = {0};
  uint64_t sum = 0;
  for (long i = 0; i < iters; i++) {
    size_t k = rng_below(&r, WORKSET);
    if (ws[k] != NULL) {
      sum += ((unsigned char*)ws[k])[0];
      free(ws[k]);
    }
    size_t n = 4 + rng_below(&r, 4096);
    ws[k] = xmalloc(n);
    ((unsigned char*)ws[k])[0] = (unsigned char)n;
  }
  for (int k = 0; k < WORKSET; k++) free(ws[k]);
  return (void*)(uintptr_t)sum;
}

int main(int argc, char** argv) {
  iters = (long)(3e6 * workload_scale(argc, argv));
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  uint64_t total = 0;
  for (int i = 0; i < THREADS; i++) {
    void* v;
    pthread_join(t[i], &v);
    total += (uint64_t)(uintptr_t)v;
  }
  printf("glibc_thread %llu\n", (unsigned long long)total);
  return 0;
}
