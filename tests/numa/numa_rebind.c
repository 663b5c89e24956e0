/* numa_rebind: mpcalloc_thread_rebind() (a thread moved from node 0 to node 1 then gets node-1
 * memory, even with node-0 memory in its caches), mpcalloc_migrate() (a block's pages move to
 * another node, contents kept; bad pointer or node: -1 and EINVAL) and mpcalloc_numa_nodes(). */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_rebind [-m PERCENT]\n"
    "  Needs mpcalloc (linked or preloaded); under another malloc every check FAILs as 'not\n"
    "  available'. PERCENT (default 99): the local share wanted after a rebind. Exit 0 PASS,\n"
    "  1 FAIL, 2 ERROR.\n";

static double need = 99;
static const size_t budget[NP_KINDS] = {2 * NP_MIB, 4 * NP_MIB, 4 * NP_MIB};
static int node_a, node_b;

/* A thread bound to node A fills and frees blocks (its caches now hold node-A memory), moves to
 * node B, calls mpcalloc_thread_rebind(), allocates again: node B. Then, unbound: -1. */
static void* mover(void* arg) {
  (void)arg;
  struct np_blocks blocks = {0};
  char label[96];
  if (np_bind(node_a) != 0 || np_blocks_fill(&blocks, budget, 0x1eb1, 0x11) != 0) return NULL;
  snprintf(label, sizeof label, "node%d, before the move", node_a);
  np_blocks_check(&blocks, label, node_a, need);
  np_blocks_free(&blocks);
  if (np_bind(node_b) != 0) return NULL;
  if (!mpcalloc_thread_rebind) {
    np_fail("mpcalloc_thread_rebind not available");
  } else {
    int got = mpcalloc_thread_rebind();
    printf("  mpcalloc_thread_rebind() bound to node%d: %d\n", node_b, got);
    if (got != node_b)
      np_fail("mpcalloc_thread_rebind() returned %d for a thread bound to node %d", got, node_b);
    if (np_blocks_fill(&blocks, budget, 0x1eb2, 0x22) == 0) {
      snprintf(label, sizeof label, "node%d, after the move and rebind", node_b);
      np_blocks_check(&blocks, label, node_b, need);
    }
    np_blocks_free(&blocks);
    if (np_unbind() == 0) {
      got = mpcalloc_thread_rebind();
      printf("  mpcalloc_thread_rebind() unbound: %d\n", got);
      if (got != -1)
        np_fail("mpcalloc_thread_rebind() returned %d for a thread on every node's CPUs", got);
    }
  }
  np_blocks_clear(&blocks);
  return NULL;
}

/* Where the pages of [P, P+SIZE) are. Returns 0 or -1. */
static int locate_block(const char* p, size_t size, struct np_tally* t) {
  struct np_pages pages = {NULL, 0, 0};
  np_pages_add(&pages, p, size);
  int rc = np_locate(&pages, t);
  np_pages_clear(&pages);
  return rc;
}

/* A thread bound to node A mallocs a small, a medium and a huge block, writes them, and moves
 * each to node B with mpcalloc_migrate: every page on B, contents unchanged. */
static void* migrator(void* arg) {
  (void)arg;
  static const size_t sizes[NP_KINDS] = {200, 300 * 1024, 6 * 1024 * 1024 + 4096};
  char label[96];
  if (np_bind(node_a) != 0) return NULL;
  if (!mpcalloc_migrate) {
    np_fail("mpcalloc_migrate not available");
    return NULL;
  }
  for (int k = 0; k < NP_KINDS; k++) {
    unsigned char* p = malloc(sizes[k]);
    if (!p) {
      np_error("malloc(%zu) returned NULL", sizes[k]);
      return NULL;
    }
    for (size_t i = 0; i < sizes[k]; i++) p[i] = (unsigned char)(i * 7 + (size_t)k);
    struct np_tally t;
    if (locate_block((char*)p, sizes[k], &t) == 0) {
      snprintf(label, sizeof label, "%s block of %zu B, before migrate", np_kind_name[k], sizes[k]);
      np_check(label, &t, node_a, -1);
    }
    errno = 0;
    int rc = mpcalloc_migrate(p, node_b);
    if (rc != 0) {
      np_fail("mpcalloc_migrate(%s block, %d) returned %d (errno %d %s)", np_kind_name[k], node_b,
              rc, errno, strerror(errno));
    } else if (locate_block((char*)p, sizes[k], &t) == 0) {
      snprintf(label, sizeof label, "%s block, after mpcalloc_migrate to node%d", np_kind_name[k],
               node_b);
      np_check(label, &t, node_b, 100);
    }
    size_t bad = 0;
    for (size_t i = 0; i < sizes[k]; i++) bad += p[i] != (unsigned char)(i * 7 + (size_t)k);
    if (bad)
      np_fail("%zu bytes of the %s block changed across mpcalloc_migrate", bad, np_kind_name[k]);
    if (k == NP_MEDIUM) {
      int no_node = np_topo.node[np_topo.n - 1].id + 1, stack = 0;
      errno = 0;
      rc = mpcalloc_migrate(p, no_node);
      printf("  mpcalloc_migrate(block, node %d that does not exist): %d, errno %d\n", no_node, rc,
             errno);
      if (rc != -1 || errno != EINVAL)
        np_fail("mpcalloc_migrate to node %d: want -1 and EINVAL", no_node);
      errno = 0;
      rc = mpcalloc_migrate(&stack, node_b);
      printf("  mpcalloc_migrate(stack address, node%d): %d, errno %d\n", node_b, rc, errno);
      if (rc != -1 || errno != EINVAL)
        np_fail("mpcalloc_migrate of a stack address: want -1 and EINVAL");
    }
    free(p);
  }
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_rebind", 2) != 0) return np_finish(need);
  node_a = np_topo.node[0].id;
  node_b = np_topo.node[1].id;
  if (!mpcalloc_numa_nodes) {
    np_fail("mpcalloc_numa_nodes not available");
  } else {
    int seen = mpcalloc_numa_nodes();
    printf("  mpcalloc_numa_nodes(): %d (/sys: %d nodes with CPUs)\n", seen, np_topo.n);
    if (seen != np_topo.n)
      np_fail("mpcalloc_numa_nodes() returned %d, /sys has %d nodes", seen, np_topo.n);
  }
  pthread_t t;
  printf("rebind: a thread moved from node%d to node%d\n", node_a, node_b);
  np_thread(&t, mover, NULL);
  pthread_join(t, NULL);
  printf("migrate: blocks written on node%d, moved to node%d\n", node_a, node_b);
  np_thread(&t, migrator, NULL);
  pthread_join(t, NULL);
  return np_finish(need);
}
