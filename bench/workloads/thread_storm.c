/* Short-lived threads: 5000 threads, each allocating and freeing a few hundred objects. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

static void* worker(void* arg) {
  long id = (long)arg;
  void* v[200];
  for (int i = 0; i < 200; i++) {
    v[i] = xmalloc(16 + (size_t)((i * 37 + id) % 2000));
    memset(v[i], i, 16);
  }
  long sum = 0;
  for (int i = 0; i < 200; i++) {
    sum += ((unsigned char*)v[i])[0];
    free(v[i]);
  }
  return (void*)sum;
}

int main(int argc, char** argv) {
  int total = (int)(20000 * workload_scale(argc, argv));
  long sum = 0;
  for (int i = 0; i < total; i += 4) {
    pthread_t t[4];
    for (long k = 0; k < 4; k++) pthread_create(&t[k], NULL, worker, (void*)(i + k));
    for (int k = 0; k < 4; k++) {
      void* r;
      pthread_join(t[k], &r);
      sum += (long)r;
    }
  }
  printf("thread_storm %ld\n", sum);
  return 0;
}
