/* Run under mpcalloc-run by tests/tools: prints where malloc comes from and its pid, then
 * NAME=value for each variable named on the command line ("NAME=<unset>" if absent). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
  void* (*volatile alloc)(size_t) = malloc;
  Dl_info info;
  const char* from = dladdr((void*)alloc, &info) != 0 && info.dli_fname ? info.dli_fname : "?";
  printf("malloc=%s\n", from);
  printf("pid=%d\n", (int)getpid());
  for (int i = 1; i < argc; ++i) {
    const char* v = getenv(argv[i]);
    printf("%s=%s\n", argv[i], v ? v : "<unset>");
  }
  void* p = alloc(3 << 20); /* some activity for --stats */
  free(p);
  return 0;
}
