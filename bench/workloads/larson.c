/* Larson-style server: threads replace random slots of their own array with new blocks of
 * random size; between rounds the arrays rotate to other threads, so blocks allocated by one
 * thread are freed by another. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

enum { THREADS = 4, SLOTS = 2000 };
static void* slots[THREADS][SLOTS];
static long rounds_per_thread;
static long ops[THREADS];

static void* worker(void* arg) {
  long id = (long)arg;
  rng_t r = {(uint64_t)id * 7919 + 11};
  void** s = slots[id];
  for (long i = 0; i < rounds_per_thread; i++) {
    size_t k = rng_below(&r, SLOTS);
    if (s[k] != NULL) {
      if (((unsigned char*)s[k])[0] != (unsigned char)(((uintptr_t)s[k] >> 4) & 0xff)) fail("slot corrupted");
      free(s[k]);
    }
    size_t n = 8 + rng_below(&r, 1000);
    s[k] = xmalloc(n);
    ((unsigned char*)s[k])[0] = (unsigned char)(((uintptr_t)s[k] >> 4) & 0xff);
    ops[id]++;
  }
  return NULL;
}

int main(int argc, char** argv) {
  rounds_per_thread = (long)(6e6 * workload_scale(argc, argv)) / 4;
  for (int round = 0; round < 4; round++) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    void* tmp[SLOTS];
    memcpy(tmp, slots[0], sizeof tmp);
    for (int i = 0; i < THREADS - 1; i++) memcpy(slots[i], slots[i + 1], sizeof tmp);
    memcpy(slots[THREADS - 1], tmp, sizeof tmp);
  }
  long total = 0;
  for (int i = 0; i < THREADS; i++) {
    total += ops[i];
    for (int k = 0; k < SLOTS; k++) free(slots[i][k]);
  }
  printf("larson %ld\n", total);
  return 0;
}
