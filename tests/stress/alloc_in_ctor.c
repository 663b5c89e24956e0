/* A library that allocates in its constructor and frees in its destructor: dlopen'ed and
 * dlclose'd repeatedly by storms_test. */
#include <stdlib.h>
#include <string.h>

static void* held[64];

__attribute__((constructor)) static void grab(void) {
  for (int i = 0; i < 64; i++) {
    held[i] = malloc((size_t)(i + 1) * 1000);
    memset(held[i], i, (size_t)(i + 1) * 1000);
  }
}

__attribute__((destructor)) static void release(void) {
  for (int i = 0; i < 64; i++) free(held[i]);
}

int alloc_in_ctor_sum(void) {
  int s = 0;
  for (int i = 0; i < 64; i++) s += ((unsigned char*)held[i])[i];
  return s;
}
