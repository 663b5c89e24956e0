/* numa_strict: with MPCALLOC_NUMA=strict, a thread of node 1 must never receive a page that a
 * thread of node 0 wrote and freed, even when node 0 left its caches full: checked by address and
 * content (node 0's bytes still there) and by placement (every page on node 1). */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_strict [-a] [-m PERCENT] [-s SMALL,MEDIUM,HUGE]\n"
    "  Thread A, bound to the first node, mallocs SMALL MiB of 16 B-1 KiB blocks, MEDIUM MiB\n"
    "  of 8 KiB-1 MiB and HUGE MiB of 2-16 MiB (default 4,8,24), fills them with a marker,\n"
    "  frees them and ends (-a: stays alive, parked). Thread B, bound to the second node,\n"
    "  then mallocs the same amounts; before writing a block it looks at each of its pages\n"
    "  that A had written. FAIL if one still holds A's marker (B received a page A freed) or\n"
    "  if less than PERCENT (default 100) of B's pages are on B's node. Run with\n"
    "  MPCALLOC_NUMA=strict and a small MPCALLOC_CACHE_MAX (e.g. 16M) so that A's frees fill\n"
    "  the cache. Exit 0 PASS, 1 FAIL, 2 ERROR.\n";

#define MARK_BYTE 0xA5
static const uint64_t mark_word = UINT64_C(0xA5A5A5A5A5A5A5A5);

static size_t budget[NP_KINDS] = {4 * NP_MIB, 8 * NP_MIB, 24 * NP_MIB};
static double need = 100;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int a_freed, b_done;

static struct np_pages a_pages; /* the pages A wrote */
static int a_node, b_node, park;

/* Whether the page at address PAGE still holds A's marker somewhere. The whole page is mapped
 * (a block covers part of it), so reading all of it is safe. */
static int holds_mark(uintptr_t page) {
  const volatile uint64_t* word = (const volatile uint64_t*)(page * NP_PAGE);
  for (size_t i = 0; i < NP_PAGE / sizeof(uint64_t); i++)
    if (word[i] == mark_word) return 1;
  return 0;
}

struct scan {
  long reused;    /* pages of B's blocks at addresses A wrote */
  long inherited; /* of those, pages still holding A's marker */
};

/* Before B writes a new block: which of its pages did A write, and do they still hold A's bytes? */
static void look_for_a(const char* p, size_t size, void* ctx) {
  struct scan* scan = ctx;
  uintptr_t first = (uintptr_t)p / NP_PAGE, last = ((uintptr_t)p + size - 1) / NP_PAGE;
  for (uintptr_t page = first; page <= last; page++) {
    if (!np_pages_has(&a_pages, page)) continue;
    scan->reused++;
    scan->inherited += holds_mark(page);
  }
}

static void* thread_a(void* arg) {
  (void)arg;
  struct np_blocks blocks = {0};
  if (np_bind(a_node) == 0 && np_blocks_fill(&blocks, budget, 0xa11ce, MARK_BYTE) == 0) {
    char label[96];
    snprintf(label, sizeof label, "node%d (A), before it frees", a_node);
    np_blocks_pages(&blocks, -1, &a_pages);
    np_blocks_check(&blocks, label, a_node, -1); /* where A's pages are: information only */
  }
  np_blocks_free(&blocks);
  np_blocks_clear(&blocks);
  pthread_mutex_lock(&lock);
  a_freed = 1;
  pthread_cond_broadcast(&wake);
  while (park && !b_done) pthread_cond_wait(&wake, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void* thread_b(void* arg) {
  (void)arg;
  struct np_blocks blocks = {0};
  struct scan scan = {0, 0};
  /* A's sizes in A's order: the likeliest way to be handed A's blocks back */
  if (np_bind(b_node) == 0 &&
      np_blocks_fill_inspect(&blocks, budget, 0xa11ce, 0x3c, look_for_a, &scan) == 0) {
    char label[96];
    snprintf(label, sizeof label, "node%d (B), after node%d freed and %s", b_node, a_node,
             park ? "parked" : "ended");
    np_blocks_check(&blocks, label, b_node, need);
    printf(
        "  node%d (B): %ld of its block pages are at addresses A wrote; %ld still held A's bytes\n",
        b_node, scan.reused, scan.inherited);
    if (scan.inherited)
      np_fail("node%d's thread received %ld pages that node%d's thread had written and freed",
              b_node, scan.inherited, a_node);
  }
  np_blocks_free(&blocks);
  np_blocks_clear(&blocks);
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-a"))
      park = 1;
    else if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      np_budget_arg(argv[++i], budget);
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_strict", 2) != 0) return np_finish(need);
  const char *mode = getenv("MPCALLOC_NUMA"), *cache = getenv("MPCALLOC_CACHE_MAX");
  printf("numa_strict: MPCALLOC_NUMA=%s MPCALLOC_CACHE_MAX=%s\n", mode ? mode : "(unset)",
         cache ? cache : "(unset)");
  printf("numa_strict: %zu KiB small, %zu KiB medium, %zu KiB huge; A %s after its frees\n",
         budget[NP_SMALL] / NP_KIB, budget[NP_MEDIUM] / NP_KIB, budget[NP_HUGE] / NP_KIB,
         park ? "stays alive" : "ends");
  a_node = np_topo.node[0].id;
  b_node = np_topo.node[1].id;
  pthread_t ta, tb;
  np_thread(&ta, thread_a, NULL);
  if (!park) pthread_join(ta, NULL);
  pthread_mutex_lock(&lock);
  while (!a_freed) pthread_cond_wait(&wake, &lock);
  pthread_mutex_unlock(&lock);
  np_thread(&tb, thread_b, NULL);
  pthread_join(tb, NULL);
  pthread_mutex_lock(&lock);
  b_done = 1;
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  if (park) pthread_join(ta, NULL);
  np_pages_clear(&a_pages);
  return np_finish(need);
}
