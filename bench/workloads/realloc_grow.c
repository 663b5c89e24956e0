/* Growing one buffer to 1 GiB by realloc in 1/8 steps, writing each new part (an array that
 * is appended to); twice at the default scale. Below scale 0.5 the final size shrinks. */
#include <string.h>

#include "workload.h"

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  int reps = (int)(2 * scale);
  if (reps < 1) reps = 1;
  size_t limit = (size_t)1 << 30;
  if (scale < 0.5) limit = (size_t)((double)limit * 2 * scale);
  long check = 0;
  for (int rep = 0; rep < reps; rep++) {
    size_t size = 4096;
    unsigned char* p = xmalloc(size);
    memset(p, 1, size);
    while (size < limit) {
      size_t next = size + size / 8 + 4096;
      unsigned char* q = realloc(p, next);
      if (q == NULL) fail("realloc");
      p = q;
      if (p[0] != 1 || p[size / 2] != 1 || p[size - 1] != 1) fail("contents lost");
      memset(p + size, 1, next - size);
      size = next;
    }
    check += p[size - 1];
    free(p);
  }
  printf("realloc_grow %ld\n", check);
  return 0;
}
