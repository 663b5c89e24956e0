/* glibc bench-malloc-simple: malloc and free of one size in a tight loop, for a set of
 * sizes, with a small number of blocks live. */
#include "workload.h"

int main(int argc, char** argv) {
  long iters = (long)(3e6 * workload_scale(argc, argv));
  static const size_t sizes[] = {16, 32, 64, 128, 256, 512, 1024, 4096};
  void* live[16];
  uint64_t sum = 0;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    for (long i = 0; i < iters / 8; i++) {
      for (int k = 0; k < 16; k++) {
        live[k] = xmalloc(sizes[s]);
        ((char*)live[k])[0] = (char)k;
      }
      for (int k = 0; k < 16; k++) {
        sum += (unsigned char)((char*)live[k])[0];
        free(live[k]);
      }
    }
  }
  printf("glibc_simple %llu\n", (unsigned long long)sum);
  return 0;
}
