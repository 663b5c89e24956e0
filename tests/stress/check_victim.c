/* Misuses the allocator in the way named by argv[1], after printing the address it is about
 * to misuse as "addr=%p". Run with MPCALLOC_CHECK=1 by checks_test. Built with -O0
 * -fno-builtin so every call really happens. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* volatile sink;

static void say(const void* p) {
  printf("addr=%p\n", p);
  fflush(stdout);
}

static void* opaque(void* p) {
  sink = p;
  return sink;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* m = argv[1];
  size_t n = strstr(m, "small") ? 40 : strstr(m, "medium") ? 50000 : (size_t)5 << 20;
  char* p = malloc(n);
  memset(p, 1, n);
  int local = 0;
  if (strncmp(m, "double-", 7) == 0) {
    say(p);
    free(p);
    free(opaque(p));
  } else if (strncmp(m, "interior-", 9) == 0) {
    say(p + 16);
    free(opaque(p + 16));
  } else if (strncmp(m, "overflow-", 9) == 0) {
    say(p);
    p[n] = 0x5a; /* one byte past the end */
    free(p);
  } else if (strcmp(m, "wild-stack") == 0) {
    say(&local);
    free(opaque(&local));
  } else if (strcmp(m, "wild-unmapped") == 0) {
    void* w = (void*)(uintptr_t)0x10000000000ull;
    say(w);
    free(opaque(w));
  } else if (strcmp(m, "realloc-double") == 0) {
    say(p);
    free(p);
    sink = realloc(opaque(p), 100);
  } else if (strcmp(m, "valid") == 0) {
    /* Correct use of every kind: must run clean with checks on. */
    for (int i = 0; i < 1000; i++) {
      void* a = malloc((size_t)i * 97 + 1);
      a = realloc(a, (size_t)i * 13 + 1);
      free(a);
    }
    void* c = calloc(10, 1000);
    free(c);
    free(p);
    puts("clean");
    return 0;
  } else {
    return 2;
  }
  puts("not detected");
  return 0;
}
