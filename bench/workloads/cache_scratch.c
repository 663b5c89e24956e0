/* cache-scratch: the main thread allocates small objects and hands one to each thread,
 * which frees it and then allocates/writes/frees its own objects repeatedly (passive false
 * sharing: the freed object's line may be reused next to another thread's object). */
#include <pthread.h>

#include "workload.h"

enum { THREADS = 2 };
static long iters;
static void* handed[THREADS];

static void* worker(void* arg) {
  long id = (long)arg;
  free(handed[id]);
  long sum = 0;
  for (long i = 0; i < iters; i++) {
    volatile char* p = xmalloc(8);
    for (int k = 0; k < 200; k++) p[k & 7] = (char)(k ^ id);
    sum += p[5];
    free((void*)p);
  }
  return (void*)sum;
}

int main(int argc, char** argv) {
  iters = (long)(2e6 * workload_scale(argc, argv));
  for (int i = 0; i < THREADS; i++) handed[i] = xmalloc(8);
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  long total = 0;
  for (int i = 0; i < THREADS; i++) {
    void* r;
    pthread_join(t[i], &r);
    total += (long)r;
  }
  printf("cache_scratch %ld\n", total);
  return 0;
}
