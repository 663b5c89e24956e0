/* numa_probe.h: what the NUMA test programs share: nodes and CPUs from /sys, binding a thread to a
 * node, page placement through move_pages(2), mmap-backed bookkeeping (never malloc: only the
 * blocks under test go through the allocator under test) and the PASS/FAIL/ERROR verdict. */
#ifndef MPCALLOC_TESTS_NUMA_PROBE_H
#define MPCALLOC_TESTS_NUMA_PROBE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* mpcalloc's NUMA entry points (issue 10). Weak: the programs also run under other allocators
 * (LD_PRELOAD), where these are null. */
int mpcalloc_thread_rebind(void) __attribute__((weak));
int mpcalloc_migrate(void* ptr, int node) __attribute__((weak));
int mpcalloc_numa_nodes(void) __attribute__((weak));

enum { NP_MAX_NODES = 64, NP_PAGE = 4096 };
enum { NP_PASS = 0, NP_FAIL = 1, NP_ERROR = 2 }; /* also the exit status */

/* ---------------------------------------------------------------- verdict and messages */

static struct {
  pthread_mutex_t lock;
  const char* prog;
  int status;        /* NP_PASS, NP_FAIL or NP_ERROR (the worst seen) */
  double worst;      /* lowest local share of all of a thread's blocks, in % (> 100: none) */
  double worst_kind; /* lowest local share of one kind of block (small, medium, huge) */
} np_verdict = {PTHREAD_MUTEX_INITIALIZER, "numa", NP_PASS, 1000.0, 1000.0};

static inline void np_mark(int status) {
  if (status > np_verdict.status) np_verdict.status = status;
}

/* Prints "FAIL: ..." (what the allocator did wrong) and records a failure. */
__attribute__((format(printf, 1, 2))) static inline void np_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&np_verdict.lock);
  printf("FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  np_mark(NP_FAIL);
  pthread_mutex_unlock(&np_verdict.lock);
  va_end(ap);
}

/* Prints "ERROR: ..." (the measurement itself could not be made) and records it. */
__attribute__((format(printf, 1, 2))) static inline void np_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&np_verdict.lock);
  printf("ERROR: ");
  vprintf(fmt, ap);
  printf("\n");
  np_mark(NP_ERROR);
  pthread_mutex_unlock(&np_verdict.lock);
  va_end(ap);
}

/* The last lines every program prints; returns the exit status. */
static inline int np_finish(double need) {
  if (np_verdict.worst_kind <= 100.0)
    printf("%s: worst %.1f%% local (need %g%%); worst block kind %.1f%% local\n", np_verdict.prog,
           np_verdict.worst, need, np_verdict.worst_kind);
  else if (np_verdict.worst <= 100.0)
    printf("%s: worst %.1f%% local (need %g%%)\n", np_verdict.prog, np_verdict.worst, need);
  static const char* const word[] = {"PASS", "FAIL", "ERROR (could not measure)"};
  printf("%s: %s\n", np_verdict.prog, word[np_verdict.status]);
  fflush(stdout);
  return np_verdict.status;
}

/* ---------------------------------------------------------------- memory for bookkeeping */

static inline void* np_map(size_t bytes) {
  void* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "ERROR: mmap(%zu) for bookkeeping: %s\n", bytes, strerror(errno));
    exit(NP_ERROR);
  }
  return p;
}

/* Grows an mmap-backed array from OLD to NEW bytes (OLD == 0: a new one). */
static inline void* np_remap(void* p, size_t old_bytes, size_t new_bytes) {
  if (!old_bytes) return np_map(new_bytes);
  void* q = mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE);
  if (q == MAP_FAILED) {
    fprintf(stderr, "ERROR: mremap(%zu) for bookkeeping: %s\n", new_bytes, strerror(errno));
    exit(NP_ERROR);
  }
  return q;
}

static inline void np_unmap(void* p, size_t bytes) {
  if (p && bytes) munmap(p, bytes);
}

/* ---------------------------------------------------------------- topology from /sys */

struct np_node {
  int id;
  int ncpus;
  cpu_set_t cpus;
};

/* The online nodes that have CPUs, in id order. */
static struct {
  int n;
  struct np_node node[NP_MAX_NODES];
} np_topo;

/* Reads a small /sys file into BUF with read(2) (stdio would malloc). Returns 0 or -1. */
static inline int np_read_small(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t got = read(fd, buf, size - 1);
  close(fd);
  if (got < 0) return -1;
  buf[got] = '\0';
  return 0;
}

/* Takes the next range "a" or "a-b" from a kernel list such as "0-3,8\n". Returns 0 at its end. */
static inline int np_next_range(const char** cursor, long* lo, long* hi) {
  const char* s = *cursor;
  while (*s == ',' || *s == ' ' || *s == '\n') s++;
  char* end;
  *lo = strtol(s, &end, 10);
  if (end == s) return 0;
  *hi = *lo;
  if (*end == '-') *hi = strtol(end + 1, &end, 10);
  *cursor = end;
  return 1;
}

/* Fills np_topo; returns the number of nodes with CPUs (0 if /sys has no node information). */
static inline int np_topology(void) {
  char list[1024], path[96], cpus[4096];
  np_topo.n = 0;
  if (np_read_small("/sys/devices/system/node/online", list, sizeof list) != 0) return 0;
  const char* cursor = list;
  long lo, hi;
  while (np_next_range(&cursor, &lo, &hi)) {
    for (long id = lo; id <= hi && np_topo.n < NP_MAX_NODES; id++) {
      snprintf(path, sizeof path, "/sys/devices/system/node/node%ld/cpulist", id);
      if (np_read_small(path, cpus, sizeof cpus) != 0) continue;
      struct np_node* node = &np_topo.node[np_topo.n];
      CPU_ZERO(&node->cpus);
      const char* c = cpus;
      long a, b;
      while (np_next_range(&c, &a, &b))
        for (long cpu = a; cpu <= b && cpu < CPU_SETSIZE; cpu++) CPU_SET((int)cpu, &node->cpus);
      node->ncpus = CPU_COUNT(&node->cpus);
      node->id = (int)id;
      if (node->ncpus > 0) np_topo.n++;
    }
  }
  return np_topo.n;
}

/* The node of the CPU the calling thread runs on, or -1. */
static inline int np_running_node(void) {
  unsigned cpu, node;
  return syscall(SYS_getcpu, &cpu, &node, NULL) == 0 ? (int)node : -1;
}

/* Binds the calling thread to the CPUs of node ID (the kernel moves it there at once). Returns
 * 0, or -1 after np_error. */
static inline int np_bind(int id) {
  for (int i = 0; i < np_topo.n; i++) {
    if (np_topo.node[i].id != id) continue;
    if (sched_setaffinity(0, sizeof(cpu_set_t), &np_topo.node[i].cpus) != 0) {
      np_error("sched_setaffinity to node %d: %s", id, strerror(errno));
      return -1;
    }
    int running = np_running_node();
    if (running == id) return 0;
    np_error("bound to node %d's CPUs but running on node %d", id, running);
    return -1;
  }
  np_error("node %d has no CPUs", id);
  return -1;
}

/* Lets the calling thread run on every CPU of every node (unbound). Returns 0 or -1. */
static inline int np_unbind(void) {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int i = 0; i < np_topo.n; i++) CPU_OR(&all, &all, &np_topo.node[i].cpus);
  if (sched_setaffinity(0, sizeof all, &all) == 0) return 0;
  np_error("sched_setaffinity to all nodes: %s", strerror(errno));
  return -1;
}

/* The file malloc comes from: libc.so.6, or the preloaded allocator. */
static inline const char* np_malloc_lib(void) {
  Dl_info info;
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  if (sym && dladdr(sym, &info) && info.dli_fname) return info.dli_fname;
  return "(unknown)";
}

/* Sets the program name and prints the first line: which malloc, how many nodes. Returns 0, or
 * -1 (after np_error) when there are fewer than MIN_NODES nodes with CPUs. */
static inline int np_start(const char* prog, int min_nodes) {
  np_verdict.prog = prog;
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order with stderr's when both go to one log */
  int n = np_topology();
  printf("%s: malloc from %s, %d NUMA node%s with CPUs\n", prog, np_malloc_lib(), n,
         n == 1 ? "" : "s");
  if (n < min_nodes) {
    np_error("%s needs at least %d NUMA nodes with CPUs (found %d); run it in numa-vm", prog,
             min_nodes, n);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- page sets and placement */

/* A set of distinct pages (open addressing on page numbers; 0 marks an empty slot). */
struct np_pages {
  uintptr_t* slot;
  size_t cap, count;
};

static inline size_t np_hash(uintptr_t page, size_t cap) {
  return (size_t)((page * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & (cap - 1);
}

static inline void np_pages_insert(struct np_pages* set, uintptr_t page) {
  size_t i = np_hash(page, set->cap);
  while (set->slot[i] && set->slot[i] != page) i = (i + 1) & (set->cap - 1);
  if (!set->slot[i]) {
    set->slot[i] = page;
    set->count++;
  }
}

static inline void np_pages_grow(struct np_pages* set) {
  struct np_pages bigger = {NULL, set->cap ? set->cap * 2 : 8192, 0};
  bigger.slot = np_map(bigger.cap * sizeof(uintptr_t));
  for (size_t i = 0; i < set->cap; i++)
    if (set->slot[i]) np_pages_insert(&bigger, set->slot[i]);
  np_unmap(set->slot, set->cap * sizeof(uintptr_t));
  *set = bigger;
}

/* Adds the pages that [P, P+LEN) covers. */
static inline void np_pages_add(struct np_pages* set, const void* p, size_t len) {
  if (!len) return;
  uintptr_t first = (uintptr_t)p / NP_PAGE, last = ((uintptr_t)p + len - 1) / NP_PAGE;
  for (uintptr_t page = first; page <= last; page++) {
    if ((set->count + 1) * 2 > set->cap) np_pages_grow(set);
    np_pages_insert(set, page);
  }
}

static inline int np_pages_has(const struct np_pages* set, uintptr_t page) {
  if (!set->cap) return 0;
  for (size_t i = np_hash(page, set->cap); set->slot[i]; i = (i + 1) & (set->cap - 1))
    if (set->slot[i] == page) return 1;
  return 0;
}

static inline void np_pages_clear(struct np_pages* set) {
  np_unmap(set->slot, set->cap * sizeof(uintptr_t));
  set->slot = NULL;
  set->cap = set->count = 0;
}

/* Where a set of pages lies. */
struct np_tally {
  long pages;            /* pages in memory */
  long absent;           /* pages not in memory (or not reported): the measure is void */
  long on[NP_MAX_NODES]; /* pages on each node */
};

/* Asks the kernel where each page of SET is: move_pages with no target nodes moves nothing
 * and returns each page's node in status. Returns 0, or -1 after np_error. */
static inline int np_locate(const struct np_pages* set, struct np_tally* t) {
  enum { BATCH = 2048 };
  void* addr[BATCH];
  int status[BATCH];
  memset(t, 0, sizeof *t);
  size_t n = 0;
  for (size_t i = 0; i <= set->cap; i++) {
    if (i < set->cap && set->slot[i]) addr[n++] = (void*)(set->slot[i] * NP_PAGE);
    if (n == BATCH || (i == set->cap && n)) {
      if (syscall(SYS_move_pages, 0, n, addr, NULL, status, 0) != 0) {
        np_error("move_pages (query): %s", strerror(errno));
        return -1;
      }
      for (size_t k = 0; k < n; k++) {
        if (status[k] >= 0 && status[k] < NP_MAX_NODES)
          t->on[status[k]]++, t->pages++;
        else
          t->absent++;
      }
      n = 0;
    }
  }
  return 0;
}

/* The share of T's pages on NODE, in %. */
static inline double np_share(const struct np_tally* t, int node) {
  return t->pages ? 100.0 * (double)t->on[node] / (double)t->pages : 0.0;
}

/* Prints "(P pages: node0 a, node1 b)" without a newline. */
static inline void np_print_spread(const struct np_tally* t) {
  printf("(%ld pages:", t->pages);
  for (int i = 0; i < np_topo.n; i++)
    printf("%s node%d %ld", i ? "," : "", np_topo.node[i].id, t->on[np_topo.node[i].id]);
  if (t->absent) printf(", NOT PRESENT %ld", t->absent);
  printf(")");
}

/* Prints one "LABEL: N% local (...)" line and checks that at least NEED % of T is on NODE
 * (NEED < 0: information only, not part of the verdict). Pages that were written but are not in
 * memory make the measure void (NP_ERROR): automatic NUMA balancing was sampling them, or the
 * allocator gave memory in use back to the kernel. T is all of a thread's blocks, or (KIND) the
 * blocks of one kind. Returns the share. */
static inline double np_check_part(const char* label, const struct np_tally* t, int node,
                                   double need, int kind) {
  double share = np_share(t, node);
  pthread_mutex_lock(&np_verdict.lock);
  printf("  %-50s %5.1f%% local ", label, share);
  np_print_spread(t);
  if (t->absent) {
    printf("  <- written pages not in memory\n");
    np_mark(NP_ERROR);
  } else if (t->pages == 0) {
    printf("  <- nothing to measure\n");
    np_mark(NP_ERROR);
  } else if (need < 0) {
    printf("  (information)\n");
  } else if (share < need) {
    printf("  <- under %g%%\n", need);
    np_mark(NP_FAIL);
  } else {
    printf("\n");
  }
  double* worst = kind ? &np_verdict.worst_kind : &np_verdict.worst;
  if (t->pages && need >= 0 && share < *worst) *worst = share;
  pthread_mutex_unlock(&np_verdict.lock);
  return share;
}

/* np_check_part for all of a thread's blocks (or a whole block). */
static inline double np_check(const char* label, const struct np_tally* t, int node, double need) {
  return np_check_part(label, t, node, need, 0);
}

/* ---------------------------------------------------------------- block workloads */

enum { NP_SMALL, NP_MEDIUM, NP_HUGE, NP_KINDS };
static const char* const np_kind_name[NP_KINDS] = {"small", "medium", "huge"};

#define NP_KIB ((size_t)1 << 10)
#define NP_MIB ((size_t)1 << 20)

static inline uint64_t np_random(uint64_t* state) { /* xorshift64* */
  uint64_t x = *state;
  x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
  *state = x;
  return x * UINT64_C(2685821657736338717);
}

/* A block size of KIND: small 16 B-1 KiB, medium 8 KiB-1 MiB, huge 2-16 MiB (log-uniform for the
 * last two, with sizes between the powers of two). */
static inline size_t np_block_size(int kind, uint64_t* rng) {
  uint64_t r = np_random(rng);
  size_t base;
  switch (kind) {
  case NP_SMALL: return 16 + (size_t)(r % 1009);
  case NP_MEDIUM: base = (8 * NP_KIB) << (r % 7); break; /* 8 KiB .. 512 KiB */
  default: base = (2 * NP_MIB) << (r % 3); break;        /* 2 .. 8 MiB */
  }
  return base + (size_t)((r >> 8) % (base + 1)); /* up to twice the base */
}

static const size_t np_kind_min[NP_KINDS] = {16, 8 * 1024, 2 * 1024 * 1024};

struct np_block {
  char* p;
  size_t size;
  int kind;
};

/* A thread's blocks (mmap-backed). */
struct np_blocks {
  struct np_block* b;
  size_t n, cap;
  size_t bytes[NP_KINDS];
};

static inline void np_blocks_push(struct np_blocks* set, char* p, size_t size, int kind) {
  if (set->n == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 4096;
    set->b = np_remap(set->b, set->cap * sizeof *set->b, cap * sizeof *set->b);
    set->cap = cap;
  }
  set->b[set->n++] = (struct np_block){p, size, kind};
  set->bytes[kind] += size;
}

/* Called with each new block before it is written (numa_strict looks at what it holds). */
typedef void np_inspect_fn(const char* p, size_t size, void* ctx);

/* Mallocs blocks until each kind k has at least BUDGET[k] bytes, kinds interleaved at random,
 * and writes every byte with FILL (a block written is a block placed: first touch). Each size
 * is cut to what the budget still needs, but never under the kind's smallest size. The same SEED
 * gives the same sizes in the same order. Returns 0, or -1 after np_error if malloc failed. */
static inline int np_blocks_fill_inspect(struct np_blocks* set, const size_t budget[NP_KINDS],
                                         uint64_t seed, int fill, np_inspect_fn* inspect,
                                         void* ctx) {
  uint64_t rng = seed | 1;
  size_t done[NP_KINDS] = {0, 0, 0};
  for (;;) {
    int open[NP_KINDS], nopen = 0;
    for (int k = 0; k < NP_KINDS; k++)
      if (done[k] < budget[k]) open[nopen++] = k;
    if (!nopen) return 0;
    int kind = open[np_random(&rng) % (uint64_t)nopen];
    size_t size = np_block_size(kind, &rng), left = budget[kind] - done[kind];
    if (size > left) size = left > np_kind_min[kind] ? left : np_kind_min[kind];
    char* p = malloc(size);
    if (!p) {
      np_error("malloc(%zu) returned NULL", size);
      return -1;
    }
    if (inspect) inspect(p, size, ctx);
    memset(p, fill, size);
    np_blocks_push(set, p, size, kind);
    done[kind] += size;
  }
}

static inline int np_blocks_fill(struct np_blocks* set, const size_t budget[NP_KINDS],
                                 uint64_t seed, int fill) {
  return np_blocks_fill_inspect(set, budget, seed, fill, NULL, NULL);
}

/* Adds the pages of the blocks of KIND (-1: all kinds) to PAGES. */
static inline void np_blocks_pages(const struct np_blocks* set, int kind, struct np_pages* pages) {
  for (size_t i = 0; i < set->n; i++)
    if (kind < 0 || set->b[i].kind == kind) np_pages_add(pages, set->b[i].p, set->b[i].size);
}

/* Frees every block (odd positions first, then even ones, so that freed neighbours do not all
 * merge in allocation order) and empties the list. */
static inline void np_blocks_free(struct np_blocks* set) {
  for (size_t i = 1; i < set->n; i += 2) free(set->b[i].p);
  for (size_t i = 0; i < set->n; i += 2) free(set->b[i].p);
  set->n = 0;
  memset(set->bytes, 0, sizeof set->bytes);
}

static inline void np_blocks_clear(struct np_blocks* set) {
  np_unmap(set->b, set->cap * sizeof *set->b);
  memset(set, 0, sizeof *set);
}

/* Measures the blocks of SET: one line per kind present and one for all, checked against NEED %
 * on NODE. Returns the share of all pages, or -1 if the kernel could not be asked. */
static inline double np_blocks_check(const struct np_blocks* set, const char* label, int node,
                                     double need) {
  char line[128];
  double all_share = -1;
  for (int i = 0; i <= NP_KINDS; i++) {
    int kind = i < NP_KINDS ? i : -1; /* the kinds, then all */
    if (kind >= 0 && !set->bytes[kind]) continue;
    struct np_pages pages = {NULL, 0, 0};
    struct np_tally t;
    np_blocks_pages(set, kind, &pages);
    int rc = np_locate(&pages, &t);
    np_pages_clear(&pages);
    if (rc != 0) return -1;
    snprintf(line, sizeof line, "%s, %s", label, kind < 0 ? "all" : np_kind_name[kind]);
    double share = np_check_part(line, &t, node, need, kind >= 0);
    if (kind < 0) all_share = share;
  }
  return all_share;
}

/* ---------------------------------------------------------------- threads */

/* Starts FN(ARG) in a new thread; exits with NP_ERROR if it cannot. */
static inline void np_thread(pthread_t* t, void* (*fn)(void*), void* arg) {
  int rc = pthread_create(t, NULL, fn, arg);
  if (rc != 0) {
    fprintf(stderr, "ERROR: pthread_create: %s\n", strerror(rc));
    exit(NP_ERROR);
  }
}

/* Parses "-m PERCENT" style numeric option values; exits with NP_ERROR on a bad one. */
static inline double np_number(const char* text, const char* what) {
  char* end;
  double v = strtod(text, &end);
  if (end == text || *end || v < 0) {
    fprintf(stderr, "ERROR: bad %s '%s'\n", what, text);
    exit(NP_ERROR);
  }
  return v;
}

/* Parses "SMALL,MEDIUM,HUGE" (MiB, fractions allowed) into BUDGET; exits with NP_ERROR on a bad
 * one. */
static inline void np_budget_arg(const char* text, size_t budget[NP_KINDS]) {
  double mib[NP_KINDS];
  char tail;
  if (sscanf(text, "%lf,%lf,%lf%c", &mib[0], &mib[1], &mib[2], &tail) != 3 || mib[0] < 0 ||
      mib[1] < 0 || mib[2] < 0) {
    fprintf(stderr, "ERROR: bad sizes '%s' (want SMALL,MEDIUM,HUGE in MiB)\n", text);
    exit(NP_ERROR);
  }
  for (int k = 0; k < NP_KINDS; k++) budget[k] = (size_t)(mib[k] * (double)NP_MIB);
}

#endif /* MPCALLOC_TESTS_NUMA_PROBE_H */
