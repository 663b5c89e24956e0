/* Thread churn: 5000 short-lived threads, 8 alive at any time (a new one starts as soon as
 * one ends), each allocating about 2 MB of 16 B-2 KiB objects, writing them and freeing them
 * before it ends. Models task runtimes that start a thread per task: an allocator that drops
 * an ended thread's memory at once makes the next thread fault the same pages in again. */
#include <pthread.h>
#include <semaphore.h>

#include "workload.h"

#define ALIVE 8

typedef struct {
  uint64_t seed;
  long sum;
} task_t;

static sem_t g_slots;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static long g_sum;

static void* task(void* arg) {
  task_t* t = arg;
  rng_t r = {t->seed * 2654435761u + 1};
  enum { kObjects = 3000 };
  static __thread char* objs[kObjects];
  size_t total = 0;
  int n = 0;
  while (total < 2000000 && n < kObjects) {
    size_t size = 16 + rng_below(&r, 2033);
    char* p = xmalloc(size);
    p[0] = (char)size;
    p[size - 1] = (char)n;
    objs[n++] = p;
    total += size;
  }
  long sum = 0;
  for (int i = 0; i < n; i++) {
    sum += objs[i][0];
    free(objs[i]);
  }
  pthread_mutex_lock(&g_lock);
  g_sum += sum;
  pthread_mutex_unlock(&g_lock);
  free(t);
  sem_post(&g_slots);
  return NULL;
}

int main(int argc, char** argv) {
  int threads = (int)(5000 * workload_scale(argc, argv));
  if (threads < ALIVE) threads = ALIVE;
  sem_init(&g_slots, 0, ALIVE);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (int i = 0; i < threads; i++) {
    sem_wait(&g_slots);
    task_t* t = xmalloc(sizeof *t);
    t->seed = (uint64_t)i;
    pthread_t th;
    if (pthread_create(&th, &attr, task, t) != 0) fail("pthread_create");
  }
  for (int i = 0; i < ALIVE; i++) sem_wait(&g_slots);
  printf("thread_churn %ld\n", g_sum);
  return 0;
}
