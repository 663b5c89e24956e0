/* N malloc(size)/free pairs after a warm-up, for counting the allocator's instructions per
 * pair under callgrind. Built with -fno-builtin so the calls stay real. */
#include <stdio.h>
#include <stdlib.h>

void* volatile sink;

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  size_t size = argc > 2 ? (size_t)atol(argv[2]) : 32;
  void* keep = malloc(size); /* keeps the class's run in use */
  for (int i = 0; i < 1000; i++) free(malloc(size));
  for (long i = 0; i < n; i++) {
    void* p = malloc(size);
    sink = p;
    free(p);
  }
  free(keep);
  return 0;
}
