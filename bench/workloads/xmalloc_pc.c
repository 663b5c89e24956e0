/* xmalloc-style producer/consumer: producer threads allocate objects of random small sizes,
 * fill batches of pointers and hand the batches over a bounded queue to consumer threads,
 * which check and free every object (every free is remote, and each consumer frees objects
 * of both producers). Waiting threads block on a condition variable, so CPU time measures
 * allocation and remote free, not spinning. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

enum { PRODUCERS = 2, CONSUMERS = 2, BATCH = 256, QDEPTH = 16 };

typedef struct {
  void* obj[BATCH];
  int count;
} batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  batch_t* q[QDEPTH];
  int head, len, producers_left;
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
           {0}, 0, 0, PRODUCERS};

static long per_producer;
static uint64_t sums[CONSUMERS];

static void push(batch_t* b) {
  pthread_mutex_lock(&queue.lock);
  while (queue.len == QDEPTH) pthread_cond_wait(&queue.not_full, &queue.lock);
  queue.q[(queue.head + queue.len) % QDEPTH] = b;
  queue.len++;
  pthread_cond_signal(&queue.not_empty);
  pthread_mutex_unlock(&queue.lock);
}

/* NULL once every producer is done and the queue is empty. */
static batch_t* pop(void) {
  pthread_mutex_lock(&queue.lock);
  while (queue.len == 0 && queue.producers_left > 0) pthread_cond_wait(&queue.not_empty, &queue.lock);
  batch_t* b = NULL;
  if (queue.len > 0) {
    b = queue.q[queue.head];
    queue.head = (queue.head + 1) % QDEPTH;
    queue.len--;
    pthread_cond_signal(&queue.not_full);
  }
  pthread_mutex_unlock(&queue.lock);
  return b;
}

static void* producer(void* arg) {
  long id = (long)arg;
  rng_t r = {(uint64_t)id * 1000003 + 5};
  batch_t* b = NULL;
  for (long i = 0; i < per_producer; i++) {
    if (b == NULL) {
      b = xmalloc(sizeof(batch_t)); /* the batch itself is freed remotely too */
      b->count = 0;
    }
    size_t n = 17 + rng_below(&r, 496); /* 16 bytes of header + a tail byte */
    uint64_t* p = xmalloc(n);
    p[0] = n;
    p[1] = ~n;
    ((unsigned char*)p)[n - 1] = (unsigned char)n;
    b->obj[b->count++] = p;
    if (b->count == BATCH) {
      push(b);
      b = NULL;
    }
  }
  if (b != NULL) push(b);
  pthread_mutex_lock(&queue.lock);
  queue.producers_left--;
  pthread_cond_broadcast(&queue.not_empty);
  pthread_mutex_unlock(&queue.lock);
  return NULL;
}

static void* consumer(void* arg) {
  long id = (long)arg;
  uint64_t sum = 0;
  batch_t* b;
  while ((b = pop()) != NULL) {
    for (int k = 0; k < b->count; k++) {
      uint64_t* p = b->obj[k];
      uint64_t n = p[0];
      if (p[1] != ~n || ((unsigned char*)p)[n - 1] != (unsigned char)n) fail("object corrupted");
      sum += n;
      free(p);
    }
    free(b);
  }
  sums[id] = sum;
  return NULL;
}

int main(int argc, char** argv) {
  per_producer = (long)(3e6 * workload_scale(argc, argv));
  pthread_t p[PRODUCERS], c[CONSUMERS];
  for (long i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer, (void*)i);
  for (long i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void*)i);
  for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
  for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
  uint64_t total = 0;
  for (int i = 0; i < CONSUMERS; i++) total += sums[i];
  printf("xmalloc_pc %llu\n", (unsigned long long)total);
  return 0;
}
