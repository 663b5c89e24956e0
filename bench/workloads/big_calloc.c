/* Big sparse calloc: allocate 128-384 MiB zeroed arrays and touch one page in 64 (sparse
 * matrices, hash tables sized for the worst case). An allocator that zeroes eagerly, or
 * recycles dirty memory and has to clear it, pays for every page. */
#include "workload.h"

int main(int argc, char** argv) {
  int n = (int)(100 * workload_scale(argc, argv));
  if (n < 1) n = 1;
  rng_t r = {5};
  long sum = 0;
  for (int i = 0; i < n; i++) {
    size_t size = ((size_t)128 << 20) + rng_below(&r, (size_t)256 << 20);
    unsigned char* p = calloc(1, size);
    if (p == NULL) fail("calloc");
    for (size_t k = 0; k < size; k += (size_t)256 << 10) {
      sum += p[k];  /* must read zero */
      p[k] = 1;
    }
    free(p);
  }
  if (sum != 0) fail("calloc memory not zero");
  printf("big_calloc %d\n", n);
  return 0;
}
