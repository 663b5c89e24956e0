/* Growing one buffer to 1 GiB by realloc in 1/8 steps, writing each new part (a growing
 * array that is appended to). */
#include <string.h>

#include "workload.h"

int main(int argc, char** argv) {
  int reps = (int)(2 * workload_scale(argc, argv));
  if (reps < 1) reps = 1;
  long check = 0;
  for (int rep = 0; rep < reps; rep++) {
    size_t size = 4096;
    unsigned char* p = xmalloc(size);
    memset(p, 1, size);
    while (size < ((size_t)1 << 30)) {
      size_t next = size + size / 8 + 4096;
      unsigned char* q = realloc(p, next);
      if (q == NULL) fail("realloc");
      p = q;
      if (p[size - 1] != 1) fail("contents lost");
      memset(p + size, 1, next - size);
      size = next;
    }
    check += p[size - 1];
    free(p);
  }
  printf("realloc_grow %ld\n", check);
  return 0;
}
