/* Consumer of an installed mpcalloc: checks that malloc is mpcalloc's, whether it is linked
 * (shared or static: CONSUMER_LINKED, CONSUMER_STATIC) or preloaded (neither). Prints one
 * "ok:" line and exits 0, or prints "FAIL:" and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpcalloc/mpcalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG ((size_t)8 << 20) /* a huge block: counted in mpcalloc's stats */

static int fail(const char* what, const char* detail) {
  printf("FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  return 1;
}

int main(void) {
  /* Through a volatile pointer: the compiler may not fold or drop the calls. */
  void* (*volatile alloc)(size_t) = malloc;
  void (*volatile release)(void*) = free;

  Dl_info info;
  if (dladdr((void*)alloc, &info) == 0 || info.dli_fname == NULL) return fail("dladdr(malloc) failed", NULL);
  const char* from = info.dli_fname;
#ifdef CONSUMER_STATIC
  /* The archive's malloc is part of the executable: not libc's, not a shared mpcalloc. */
  if (strstr(from, "libc.so") != NULL || strstr(from, "libmpcalloc") != NULL) {
    return fail("malloc is not the executable's own (static mpcalloc)", from);
  }
#else
  if (strstr(from, "libmpcalloc") == NULL) return fail("malloc does not come from libmpcalloc", from);
#endif

#ifdef CONSUMER_LINKED
  void (*get_stats)(mpcalloc_stats_t*) = mpcalloc_stats_get;
  if (MPCALLOC_VERSION_MAJOR != atoi(EXPECTED_VERSION) ||
      MPCALLOC_VERSION_MINOR != atoi(strchr(EXPECTED_VERSION, '.') + 1)) {
    return fail("header version differs from the package version", EXPECTED_VERSION);
  }
#else
  void (*get_stats)(mpcalloc_stats_t*);
  *(void**)&get_stats = dlsym(RTLD_DEFAULT, "mpcalloc_stats_get");
  if (get_stats == NULL) return fail("mpcalloc_stats_get not found in the process", NULL);
#endif

  mpcalloc_stats_t before, during, after;
  get_stats(&before);
  char* p = alloc(BIG);
  if (p == NULL) return fail("malloc(8 MiB) returned NULL", NULL);
  memset(p, 0x5a, BIG);
  get_stats(&during);
  release(p);
  get_stats(&after);
  if (during.huge_count != before.huge_count + 1 || during.huge_bytes < before.huge_bytes + BIG) {
    return fail("malloc(8 MiB) did not show in mpcalloc_stats_get", NULL);
  }
  if (after.huge_count != before.huge_count) return fail("free did not show in mpcalloc_stats_get", NULL);
  printf("ok: malloc from %s, huge_count %zu -> %zu -> %zu\n", from, before.huge_count,
         during.huge_count, after.huge_count);
  return 0;
}
