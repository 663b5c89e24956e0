/* A library that allocates in its constructor and frees in its destructor (small, medium and
 * one huge block): dlopen'ed and dlclose'd repeatedly by storms_test. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HELD 64
static void* held[HELD];
static void* huge;

__attribute__((constructor)) static void grab(void) {
  for (int i = 0; i < HELD; i++) {
    held[i] = malloc((size_t)(i + 1) * 1000);
    if (held[i] != NULL) memset(held[i], i, (size_t)(i + 1) * 1000);
  }
  huge = malloc((size_t)3 << 20);
  if (huge != NULL) memset(huge, 0x77, (size_t)3 << 20);
}

__attribute__((destructor)) static void release(void) {
  for (int i = 0; i < HELD; i++) free(held[i]);
  free(huge);
}

/* Sum of one byte of each block: 0 + 1 + ... + 63 when everything is intact. */
int alloc_in_ctor_sum(void) {
  int s = 0;
  for (int i = 0; i < HELD; i++) {
    if (held[i] == NULL) return -1;
    s += ((unsigned char*)held[i])[(size_t)(i + 1) * 1000 - 1];
  }
  if (huge == NULL || ((unsigned char*)huge)[((size_t)3 << 20) - 1] != 0x77) return -1;
  return s;
}

static void* thread_body(void* arg) {
  (void)arg;
  void* p[100];
  for (int i = 0; i < 100; i++) p[i] = malloc((size_t)i * 300 + 1);
  for (int i = 0; i < 100; i++) free(p[i]);
  return malloc(4000); /* freed by the caller's thread */
}

/* Runs a thread that allocates; 0 on success. */
int alloc_in_ctor_thread(void) {
  pthread_t t;
  void* out = NULL;
  if (pthread_create(&t, NULL, thread_body, NULL) != 0) return 1;
  if (pthread_join(t, &out) != 0 || out == NULL) return 2;
  free(out);
  return 0;
}
