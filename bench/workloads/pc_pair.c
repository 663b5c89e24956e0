/* xmalloc-test shape: one producer thread allocates 64-byte objects, writes them, and hands
 * them over in malloc'd batches of 4096 pointers to one consumer thread, which checks and
 * frees them and the batch: every free is a remote free, nearly all of one size class. The
 * producer may run up to QDEPTH batches ahead. Fixed work (a count of objects, not a
 * duration), so CPU time is inverse throughput. */
#include <pthread.h>
#include <string.h>

#include "workload.h"

enum { OBJ = 64, BATCH = 4096, QDEPTH = 16 };

typedef struct batch {
  struct batch* next;
  int count;
  uint64_t* obj[BATCH];
} batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  batch_t *head, *tail;
  int len, done;
} queue = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0};

static long objects;

static void push(batch_t* b) {
  pthread_mutex_lock(&queue.lock);
  while (queue.len == QDEPTH) pthread_cond_wait(&queue.not_full, &queue.lock);
  b->next = NULL;
  if (queue.tail != NULL) queue.tail->next = b;
  else queue.head = b;
  queue.tail = b;
  queue.len++;
  pthread_cond_signal(&queue.not_empty);
  pthread_mutex_unlock(&queue.lock);
}

/* NULL once the producer is done and the queue is empty. */
static batch_t* pop(void) {
  pthread_mutex_lock(&queue.lock);
  while (queue.len == 0 && !queue.done) pthread_cond_wait(&queue.not_empty, &queue.lock);
  batch_t* b = queue.head;
  if (b != NULL) {
    queue.head = b->next;
    if (queue.head == NULL) queue.tail = NULL;
    queue.len--;
    pthread_cond_signal(&queue.not_full);
  }
  pthread_mutex_unlock(&queue.lock);
  return b;
}

static void* producer(void* arg) {
  (void)arg;
  long made = 0;
  while (made < objects) {
    batch_t* b = xmalloc(sizeof(batch_t)); /* freed by the consumer too */
    b->count = 0;
    while (b->count < BATCH && made < objects) {
      uint64_t* p = xmalloc(OBJ);
      memset(p, (int)(made & 0xff), OBJ);
      p[0] = (uint64_t)made;
      b->obj[b->count++] = p;
      made++;
    }
    push(b);
  }
  pthread_mutex_lock(&queue.lock);
  queue.done = 1;
  pthread_cond_broadcast(&queue.not_empty);
  pthread_mutex_unlock(&queue.lock);
  return NULL;
}

static void* consumer(void* arg) {
  uint64_t sum = 0;
  batch_t* b;
  while ((b = pop()) != NULL) {
    for (int k = 0; k < b->count; k++) {
      uint64_t* p = b->obj[k];
      if (((unsigned char*)p)[OBJ - 1] != (unsigned char)(p[0] & 0xff)) fail("object corrupted");
      sum += p[0];
      free(p);
    }
    free(b);
  }
  *(uint64_t*)arg = sum;
  return NULL;
}

int main(int argc, char** argv) {
  objects = (long)(40e6 * workload_scale(argc, argv));
  uint64_t sum = 0;
  pthread_t p, c;
  pthread_create(&c, NULL, consumer, &sum);
  pthread_create(&p, NULL, producer, NULL);
  pthread_join(p, NULL);
  pthread_join(c, NULL);
  if (sum != (uint64_t)objects * (uint64_t)(objects - 1) / 2) fail("objects lost");
  printf("pc_pair %ld %llu\n", objects, (unsigned long long)sum);
  return 0;
}
