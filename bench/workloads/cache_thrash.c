/* cache-thrash: each thread repeatedly allocates a small object, writes it many times and
 * frees it. An allocator that hands neighbouring objects to different threads makes them
 * share cache lines (active false sharing). */
#include <pthread.h>

#include "workload.h"

enum { THREADS = 2 };
static long iters;

static void* worker(void* arg) {
  long id = (long)arg;
  long sum = 0;
  for (long i = 0; i < iters; i++) {
    volatile char* p = xmalloc(8);
    for (int k = 0; k < 200; k++) p[k & 7] = (char)(k + id);
    sum += p[3];
    free((void*)p);
  }
  return (void*)sum;
}

int main(int argc, char** argv) {
  iters = (long)(2e6 * workload_scale(argc, argv));
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  long total = 0;
  for (int i = 0; i < THREADS; i++) {
    void* r;
    pthread_join(t[i], &r);
    total += (long)r;
  }
  printf("cache_thrash %ld\n", total);
  return 0;
}
