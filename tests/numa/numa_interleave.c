/* numa_interleave: with MPCALLOC_NUMA=interleave, one huge block that a single thread mallocs and
 * writes must have its pages spread evenly over the nodes (each within a tolerance of an even
 * share), for big arrays that a whole team uses. Run in numa-vm with enough memory per node. */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_interleave [-t PERCENT] [-s MIB]\n"
    "  A thread bound to the first node mallocs one block of MIB (default 256), writes it and\n"
    "  counts its pages per node. PASS when every node holds an even share of them, give or\n"
    "  take PERCENT (default 10) of that share. Run with MPCALLOC_NUMA=interleave and numa-vm\n"
    "  --mem-per-node large enough for the whole block on one node. Exit 0 PASS, 1 FAIL, 2\n"
    "  ERROR.\n";

static double tolerance = 10;
static size_t size = 256 * NP_MIB;

static void* work(void* arg) {
  (void)arg;
  int node = np_topo.node[0].id;
  if (np_bind(node) != 0) return NULL;
  char* p = malloc(size);
  if (!p) {
    np_error("malloc(%zu) returned NULL", size);
    return NULL;
  }
  memset(p, 0x77, size);
  struct np_pages pages = {NULL, 0, 0};
  struct np_tally t;
  np_pages_add(&pages, p, size);
  int rc = np_locate(&pages, &t);
  np_pages_clear(&pages);
  if (rc == 0) {
    char label[96];
    snprintf(label, sizeof label, "node%d, one %zu MiB block", node, size / NP_MIB);
    np_check(label, &t, node, -1);
    double even = 100.0 / np_topo.n, slack = even * tolerance / 100;
    for (int i = 0; i < np_topo.n; i++) {
      int id = np_topo.node[i].id;
      double share = np_share(&t, id);
      int ok = share >= even - slack && share <= even + slack;
      printf(
          "  node%d holds %5.1f%% of the block's pages (even share %.1f%%, allowed "
          "%.1f-%.1f%%)%s\n",
          id, share, even, even - slack, even + slack, ok ? "" : "  <- uneven");
      if (!ok)
        np_fail("node%d holds %.1f%% of the interleaved block, not %.1f%% +- %.1f%%", id, share,
                even, slack);
    }
  }
  free(p);
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-t") && i + 1 < argc)
      tolerance = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      size = (size_t)(np_number(argv[++i], "MiB") * (double)NP_MIB);
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_interleave", 2) != 0) return np_finish(0);
  const char* mode = getenv("MPCALLOC_NUMA");
  printf("numa_interleave: MPCALLOC_NUMA=%s, one %zu MiB block\n", mode ? mode : "(unset)",
         size / NP_MIB);
  pthread_t t;
  np_thread(&t, work, NULL);
  pthread_join(t, NULL);
  return np_finish(0);
}
