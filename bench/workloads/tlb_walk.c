/* TLB-heavy: a 256 MiB table and 64 KiB-8 MiB side arrays, read at random places (dependent
 * loads, a random walk over pages), the table reallocated a few times. Shows what transparent
 * huge pages (MPCALLOC_THP) do for big arrays: one TLB entry per 2 MiB instead of per 4 KiB. */
#include "workload.h"

int main(int argc, char** argv) {
  long steps = (long)(1e7 * workload_scale(argc, argv));
  rng_t r = {4242};
  size_t n = ((size_t)256 << 20) / sizeof(uint64_t);
  uint64_t sum = 0;
  for (int round = 0; round < 3; round++) {
    uint64_t* t = xmalloc(n * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) t[i] = rng_next(&r);
    size_t k = 0;
    for (long s = 0; s < steps / 3; s++) {
      k = (size_t)((t[k] ^ (uint64_t)s) % n);
      sum += t[k];
    }
    free(t);
  }
  printf("tlb_walk %llu\n", (unsigned long long)(sum & 0xffffffff));
  return 0;
}
