/* Calls malloc_info (or mpcalloc_malloc_info, prefixed face) after allocating small, medium and
 * huge blocks and prints its XML, then the statistics of that moment as JSON, then what
 * options != 0 and a NULL stream return. check_malloc_info.py reads it all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpcalloc/mpcalloc.h"

#if PROBE_PREFIXED
#define INFO mpcalloc_malloc_info
#define ALLOC mpcalloc_malloc
#define RELEASE mpcalloc_free
#else
#define INFO malloc_info
#define ALLOC malloc
#define RELEASE free
#endif

static void* must(size_t n) {
  void* p = ALLOC(n);
  if (p == NULL) {
    fprintf(stderr, "probe: out of memory\n");
    exit(3);
  }
  memset(p, 0x5a, n);
  return p;
}

int main(void) {
  enum { kSmall = 200, kMedium = 24, kHuge = 3 };
  void* small[kSmall];
  void* medium[kMedium];
  void* huge[kHuge];
  for (int i = 0; i < kSmall; i++) small[i] = must(16 + (size_t)i * 8);
  for (int i = 0; i < kMedium; i++) medium[i] = must(((size_t)20 + (size_t)i) << 10);
  for (int i = 0; i < kHuge; i++) huge[i] = must(((size_t)3 + (size_t)i) << 20);
  void* hugest = must((size_t)9 << 20);
  RELEASE(huge[0]); /* goes to the cache: "rest" has something to show */

#if !PROBE_PREFIXED
  /* The override library's malloc_info, not glibc's, answers. */
  Dl_info where;
  if (dladdr((void*)&malloc_info, &where) == 0 || where.dli_fname == NULL ||
      strstr(where.dli_fname, "libmpcalloc") == NULL) {
    printf("WHERE %s\n", where.dli_fname != NULL ? where.dli_fname : "(unknown)");
    return 1;
  }
#endif

  /* The stream gets its buffer now, so nothing allocates between the call and the stats. */
  static char out_buf[1 << 16];
  FILE* xml = tmpfile();
  if (xml == NULL || setvbuf(xml, out_buf, _IOFBF, sizeof(out_buf)) != 0) return 2;
  int rc = INFO(0, xml);
  fflush(stdout);
  mpcalloc_stats_print(STDOUT_FILENO, 1); /* the JSON line: the figures at that moment */
  printf("RC %d\n", rc);
  rewind(xml);
  printf("XML-BEGIN\n");
  char line[512];
  while (fgets(line, sizeof(line), xml) != NULL) fputs(line, stdout);
  printf("XML-END\n");
  fclose(xml);

  errno = 0;
  rc = INFO(1, stdout);
  printf("OPTIONS1 %d %d\n", rc, errno);
  errno = 0;
  rc = INFO(0, NULL);
  printf("NULLFP %d %d\n", rc, errno);

  for (int i = 0; i < kSmall; i++) RELEASE(small[i]);
  for (int i = 0; i < kMedium; i++) RELEASE(medium[i]);
  for (int i = 1; i < kHuge; i++) RELEASE(huge[i]);
  RELEASE(hugest);
  return 0;
}
