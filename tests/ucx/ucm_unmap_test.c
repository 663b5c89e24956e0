/* Every range mpcalloc gives back to the OS must reach UCX's memory hooks (libucm) as a
 * UCM_EVENT_VM_UNMAPPED event: MPI registration caches drop stale RDMA registrations on it.
 * Usage: ucm_unmap_test SCENARIO (ctest sets the scenario's MPCALLOC_* and UCX_* variables). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <mpcalloc/mpcalloc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucm/api/ucm.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

enum {
  kMaxEvents = 1 << 16,
  kMaxWatches = 512,
  kMaxPages = 1 << 18, /* 1 GiB of 4 KiB pages watched at most */
};

/* ---------------------------------------------------------------- events from libucm */

typedef struct {
  uintptr_t start, end;
} Range;

static Range g_events[kMaxEvents];
static atomic_size_t g_event_count;

/* Called by libucm before a range leaves the address space (munmap, mremap's old range,
 * madvise(MADV_DONTNEED)...). Must not allocate. */
static void on_vm_unmapped(ucm_event_type_t type, ucm_event_t* event, void* arg) {
  (void)arg;
  if (type != UCM_EVENT_VM_UNMAPPED) return;
  size_t i = atomic_fetch_add(&g_event_count, 1);
  if (i >= kMaxEvents) return; /* step_end reports the overflow */
  uintptr_t a = (uintptr_t)event->vm_unmapped.address;
  g_events[i] = (Range){a, a + event->vm_unmapped.size};
}

/* ---------------------------------------------------------------- watched memory */

/* Whole pages inside blocks the program got from malloc and touched: after a step, a page
 * that was resident and is now unmapped or dropped was released by the allocator. */
typedef struct {
  uintptr_t start;
  size_t pages;
  size_t first; /* index of its first page in g_before/g_after/g_covered */
  const char* what;
} Watch;

static Watch g_watches[kMaxWatches];
static size_t g_watch_count, g_pages_used;
static unsigned char g_before[kMaxPages], g_after[kMaxPages], g_covered[kMaxPages];
static unsigned char g_vec[kMaxPages];
static size_t g_page;
static int g_failed;
static int g_expect_unreported; /* self check: unreported pages are the expected outcome */

static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  g_failed = 1;
}

static void watch_reset(void) { g_watch_count = g_pages_used = 0; }

/* Touches [p, p + n) and watches the whole pages inside it. */
static void watch(void* p, size_t n, const char* what) {
  memset(p, 0xa5, n);
  uintptr_t start = ((uintptr_t)p + g_page - 1) & ~(g_page - 1);
  uintptr_t end = ((uintptr_t)p + n) & ~(g_page - 1);
  if (end <= start) return;
  size_t pages = (end - start) / g_page;
  if (g_watch_count == kMaxWatches || g_pages_used + pages > kMaxPages) {
    fail("test limits: too many watched ranges or pages");
    exit(1);
  }
  g_watches[g_watch_count++] = (Watch){start, pages, g_pages_used, what};
  g_pages_used += pages;
}

/* 1 = mapped and resident, 0 = unmapped or not resident (released), for every watched page. */
static void snapshot(unsigned char* state) {
  for (size_t w = 0; w < g_watch_count; ++w) {
    const Watch* r = &g_watches[w];
    if (mincore((void*)r->start, r->pages * g_page, g_vec) == 0) {
      for (size_t i = 0; i < r->pages; ++i) state[r->first + i] = g_vec[i] & 1;
      continue;
    }
    /* Some page is unmapped (ENOMEM): page by page. */
    for (size_t i = 0; i < r->pages; ++i) {
      unsigned char v = 0;
      int rc = mincore((void*)(r->start + i * g_page), g_page, &v);
      state[r->first + i] = rc == 0 ? (v & 1) : 0;
      if (rc != 0 && errno != ENOMEM) {
        fail("mincore: %s", strerror(errno));
        exit(1);
      }
    }
  }
}

/* ---------------------------------------------------------------- steps and totals */

typedef struct {
  size_t events, munmaps, mremaps, released_pages, unreported_pages;
} Totals;

typedef struct {
  const char* name;
  size_t e0;
  mpcalloc_stats_t s0;
} Step;

static Totals g_totals;

static Step step_begin(const char* name) {
  Step s;
  s.name = name;
  snapshot(g_before);
  mpcalloc_stats_get(&s.s0);
  s.e0 = atomic_load(&g_event_count);
  return s;
}

/* Every watched page released during the step must lie in a range reported during the step,
 * and every munmap/mremap call mpcalloc made must have produced at least one event. */
static void step_end(const Step* s) {
  size_t e1 = atomic_load(&g_event_count);
  mpcalloc_stats_t s1;
  mpcalloc_stats_get(&s1);
  snapshot(g_after);
  if (e1 > kMaxEvents) {
    fail("%s: more than %d events, raise kMaxEvents", s->name, kMaxEvents);
    exit(1);
  }
  memset(g_covered, 0, g_pages_used);
  for (size_t e = s->e0; e < e1; ++e) {
    for (size_t w = 0; w < g_watch_count; ++w) {
      const Watch* r = &g_watches[w];
      uintptr_t end = r->start + r->pages * g_page;
      uintptr_t lo = g_events[e].start > r->start ? g_events[e].start : r->start;
      uintptr_t hi = g_events[e].end < end ? g_events[e].end : end;
      if (lo >= hi) continue;
      size_t a = (lo - r->start) / g_page, b = (hi - r->start + g_page - 1) / g_page;
      memset(g_covered + r->first + a, 1, b - a);
    }
  }
  size_t released = 0, unreported = 0;
  for (size_t w = 0; w < g_watch_count; ++w) {
    const Watch* r = &g_watches[w];
    size_t missed = 0, first_missed = 0;
    for (size_t i = 0; i < r->pages; ++i) {
      size_t k = r->first + i;
      if (!g_before[k] || g_after[k]) continue;
      ++released;
      if (!g_covered[k]) {
        if (missed++ == 0) first_missed = i;
      }
    }
    if (missed != 0 && g_expect_unreported) {
      unreported += missed;
    } else if (missed != 0) {
      fail("%s: %zu released pages of %s [%#lx, +%zu KiB) not reported, first at %#lx", s->name,
           missed, r->what, (unsigned long)r->start, r->pages * g_page / 1024,
           (unsigned long)(r->start + first_missed * g_page));
      unreported += missed;
    }
  }
  size_t events = e1 - s->e0;
  size_t munmaps = s1.munmap_calls - s->s0.munmap_calls;
  size_t mremaps = s1.mremap_calls - s->s0.mremap_calls;
  if (events < munmaps + mremaps) {
    fail("%s: mpcalloc made %zu munmap + %zu mremap calls but only %zu VM_UNMAPPED events came",
         s->name, munmaps, mremaps, events);
  }
  printf("  step %-28s events %5zu  munmap +%-4zu mremap +%-4zu released %6zu pages (%zu MiB)%s\n",
         s->name, events, munmaps, mremaps, released, released * g_page / MIB,
         unreported ? "  UNREPORTED" : "");
  fflush(stdout);
  g_totals.events += events;
  g_totals.munmaps += munmaps;
  g_totals.mremaps += mremaps;
  g_totals.released_pages += released;
  g_totals.unreported_pages += unreported;
}

static size_t watched_pages(void) { return g_pages_used; }

/* ---------------------------------------------------------------- malloc is mpcalloc's */

static int from_mpcalloc(void* fn, const char** where) {
  Dl_info info;
  *where = dladdr(fn, &info) != 0 && info.dli_fname != NULL ? info.dli_fname : "?";
  return strstr(*where, "libmpcalloc") != NULL;
}

/* UCX installs its own malloc when it finds the process's malloc does not produce the events
 * it needs; then mpcalloc is bypassed and this test would prove nothing. */
static void check_malloc_is_mpcalloc(const char* when) {
  void* (*volatile alloc)(size_t) = malloc;
  const char* where;
  if (!from_mpcalloc((void*)alloc, &where)) fail("%s: malloc comes from %s, not libmpcalloc", when, where);
  if (!from_mpcalloc(dlsym(RTLD_DEFAULT, "malloc"), &where)) {
    fail("%s: dlsym(malloc) comes from %s, not libmpcalloc", when, where);
  }
  mpcalloc_stats_t a, b;
  mpcalloc_stats_get(&a);
  void* p = alloc(8 * MIB);
  mpcalloc_stats_get(&b);
  free(p);
  if (b.huge_count != a.huge_count + 1) fail("%s: malloc(8 MiB) did not go to mpcalloc", when);
}

/* ---------------------------------------------------------------- scenarios */

/* Sizes from 2 to 8 MiB, not multiples of the page size: huge blocks of varied lengths. */
static size_t huge_size(int i, int count) {
  return 2 * MIB + (size_t)i * (6 * MIB) / (size_t)(count > 1 ? count - 1 : 1) + 1000;
}

static void expect_pages(const char* what, size_t got, size_t want_at_least) {
  if (got < want_at_least) fail("%s: %zu pages released, want at least %zu", what, got, want_at_least);
}

/* The checker itself: a release done behind libucm's back (raw syscall) must be flagged. */
static void scenario_self_check(void) {
  size_t n = 4 * MIB;
  void* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fail("mmap: %s", strerror(errno));
    return;
  }
  watch(p, n, "a raw mapping");
  Step s = step_begin("raw munmap syscall");
  syscall(SYS_munmap, p, n);
  g_expect_unreported = 1;
  step_end(&s);
  g_expect_unreported = 0;
  if (g_totals.unreported_pages != n / g_page) {
    fail("self check: the checker flagged %zu of %zu silently unmapped pages",
         g_totals.unreported_pages, n / g_page);
    return;
  }
  printf("  ok: the checker flagged all %zu pages unmapped behind libucm's back\n", n / g_page);
  g_totals.unreported_pages = 0;
}

/* MPCALLOC_CACHE_MAX=0: every freed huge block goes straight back to the OS. */
static void scenario_huge_free_budget0(void) {
  enum { kBlocks = 48 };
  char* p[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    p[i] = malloc(huge_size(i, kBlocks));
    if (p[i] == NULL) { fail("malloc failed"); return; }
    watch(p[i], huge_size(i, kBlocks), "a freed huge block");
  }
  Step s = step_begin("free 48 huge blocks");
  for (int i = 0; i < kBlocks; ++i) free(p[i]);
  step_end(&s);
  expect_pages("budget 0: every freed block", g_totals.released_pages, watched_pages());
}

/* MPCALLOC_CACHE_MAX=16M: the cache keeps at most 16 MiB, the rest is evicted. */
static void scenario_cache_evict(void) {
  enum { kBlocks = 24 };
  char* p[kBlocks];
  size_t total = 0;
  for (int i = 0; i < kBlocks; ++i) {
    size_t n = huge_size(i, kBlocks) / 2 + 2 * MIB;
    p[i] = malloc(n);
    if (p[i] == NULL) { fail("malloc failed"); return; }
    watch(p[i], n, "a huge block past the cache budget");
    total += n;
  }
  // The blocks freed stay cached (they were the recent working set) until they decay: the
  // next release after the decay time evicts them.
  Step s = step_begin("free 24 huge blocks, wait past the decay time, free one more");
  for (int i = 0; i < kBlocks; ++i) free(p[i]);
  struct timespec ts = {0, 600 * 1000 * 1000};
  nanosleep(&ts, NULL);
  free(malloc(3 * MIB));
  step_end(&s);
  mpcalloc_stats_t st;
  mpcalloc_stats_get(&st);
  if (st.cached_bytes > 16 * MIB) fail("cache holds %zu bytes, budget is 16 MiB", st.cached_bytes);
  expect_pages("eviction beyond 16 MiB", g_totals.released_pages, (total - 16 * MIB) / g_page - kBlocks * 2);
}

/* Default budget: freed blocks stay cached until malloc_trim(0) returns them all. */
static void scenario_malloc_trim(void) {
  enum { kBlocks = 16 };
  char* p[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    p[i] = malloc(huge_size(i, kBlocks));
    if (p[i] == NULL) { fail("malloc failed"); return; }
    watch(p[i], huge_size(i, kBlocks), "a cached huge block");
  }
  Step s = step_begin("free 16 huge blocks (cached)");
  for (int i = 0; i < kBlocks; ++i) free(p[i]);
  step_end(&s);
  s = step_begin("malloc_trim(0)");
  malloc_trim(0);
  step_end(&s);
  mpcalloc_stats_t st;
  mpcalloc_stats_get(&st);
  if (st.cached_bytes != 0) fail("malloc_trim(0) left %zu bytes cached", st.cached_bytes);
  expect_pages("free + malloc_trim", g_totals.released_pages, watched_pages());
}

/* calloc reusing a cached block drops its pages (madvise) instead of writing zeros. */
static void scenario_calloc_reuse(void) {
  enum { kBlocks = 8 };
  char* p[kBlocks];
  size_t n = 4 * MIB + 12345;
  for (int i = 0; i < kBlocks; ++i) {
    p[i] = malloc(n);
    if (p[i] == NULL) { fail("malloc failed"); return; }
    watch(p[i], n, "a cached block reused by calloc");
  }
  for (int i = 0; i < kBlocks; ++i) free(p[i]);
  Step s = step_begin("calloc from the cache");
  for (int i = 0; i < kBlocks; ++i) {
    p[i] = calloc(1, n);
    if (p[i] == NULL) { fail("calloc failed"); return; }
  }
  step_end(&s);
  for (int i = 0; i < kBlocks; ++i) {
    for (size_t k = 0; k < n; k += 4096) {
      if (p[i][k] != 0) { fail("calloc returned non-zero memory"); return; }
    }
    free(p[i]);
  }
  expect_pages("calloc reuse", g_totals.released_pages, 1);
}

/* realloc of a huge block: mremap in place or to a new range (the old one is vacated), and
 * shrinking releases the tail. */
static void scenario_mremap(void) {
  size_t n = 4 * MIB;
  char* p = malloc(n);
  if (p == NULL) { fail("malloc failed"); return; }
  memset(p, 1, n);
  int moves = 0;
  for (size_t m = 2 * n; m <= 256 * MIB; m *= 2) {
    watch_reset();
    watch(p, n, "a huge block grown by realloc");
    char label[64];
    snprintf(label, sizeof label, "realloc %zu -> %zu MiB", n / MIB, m / MIB);
    printf("  %s ...\n", label);
    fflush(stdout);
    Step s = step_begin(label);
    char* q = realloc(p, m);
    if (q == NULL) { fail("realloc failed"); return; }
    /* Moved: the old range is vacated (its pages read as gone) and must have been reported. */
    step_end(&s);
    if (q != p) ++moves;
    p = q;
    n = m;
    memset(p, 2, n);
  }
  watch_reset();
  watch(p, n, "a huge block shrunk by realloc");
  Step s = step_begin("realloc 256 -> 8 MiB");
  char* q = realloc(p, 8 * MIB);
  if (q == NULL) { fail("realloc failed"); return; }
  step_end(&s);
  free(q);
  printf("  %d of 6 growths moved the block\n", moves);
  if (g_totals.mremaps == 0) fail("no mremap call: realloc of huge blocks did not use mremap");
  expect_pages("realloc growth and shrink", g_totals.released_pages, 1);
}

/* Medium blocks in segments: freed, then malloc_trim. What comes back depends on the segment
 * purging policy (issue 11); whatever is released must be reported. */
static void scenario_segments(void) {
  enum { kBlocks = 96 };
  char* p[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    size_t n = 64 * 1024 + (size_t)i * 8 * 1024;
    p[i] = malloc(n);
    if (p[i] == NULL) { fail("malloc failed"); return; }
    watch(p[i], n, "a medium block");
  }
  Step s = step_begin("free 96 medium blocks");
  for (int i = 0; i < kBlocks; ++i) free(p[i]);
  step_end(&s);
  s = step_begin("malloc_trim(0)");
  malloc_trim(0);
  step_end(&s);
}

/* Medium purge: free chunks unused for the decay time give their pages back at the owner's
 * next maintenance (madvise), while their segments stay in use (a live block in each). */
static void scenario_medium_purge(void) {
  enum { kBlocks = 120 };
  char* p[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    size_t n = 200 * 1024 + (size_t)i * 1024;
    p[i] = malloc(n);
    if (p[i] == NULL) { fail("malloc failed"); return; }
    memset(p[i], 1, n);
    if (i % 8 != 0) watch(p[i], n, "a freed medium block in a segment still in use");
  }
  for (int i = 0; i < kBlocks; ++i) {
    if (i % 8 != 0) free(p[i]);
  }
  Step s = step_begin("wait past the decay time, then medium calls (the owner's maintenance)");
  struct timespec ts = {0, 300 * 1000 * 1000};
  nanosleep(&ts, NULL);
  for (int i = 0; i < 300; ++i) free(malloc(20000 + (size_t)i));
  step_end(&s);
  expect_pages("medium purge", g_totals.released_pages, watched_pages() / 2);
  for (int i = 0; i < kBlocks; i += 8) free(p[i]);
}

/* A request larger than every cached block grows the largest one with mremap (in place, or
 * moved to a new aligned range: the old one is vacated). */
static void scenario_cache_grow(void) {
  malloc_trim(0); /* start from an empty cache */
  char* a = malloc(3 * MIB);
  char* fence = malloc(3 * MIB); /* kept: usually right above a, so a cannot grow in place */
  if (a == NULL || fence == NULL) { fail("malloc failed"); return; }
  watch(a, 3 * MIB, "a cached block grown for a larger request");
  uintptr_t cached_at = (uintptr_t)a;
  free(a);
  printf("  malloc(9 MiB) with one 3 MiB block cached ...\n");
  fflush(stdout);
  Step s = step_begin("malloc 9 MiB from the cache");
  char* q = malloc(9 * MIB);
  if (q == NULL) { fail("malloc failed"); return; }
  memset(q, 3, 9 * MIB);
  step_end(&s);
  printf("  the cached block %s\n", (uintptr_t)q - cached_at < 4 * MIB ? "grew in place" : "moved");
  free(q);
  free(fence);
  if (g_totals.mremaps == 0) fail("no mremap call: the cached block was not grown");
}

/* A request larger than every cached block joins several of them: their pages move (mremap
 * to a fixed address) into one new range, and each old range leaves the address space. */
static void scenario_cache_join(void) {
  malloc_trim(0); /* start from an empty cache */
  char* a = malloc(6 * MIB);
  char* fence_a = malloc(3 * MIB); /* kept: a and b must not merge in the cache */
  char* b = malloc(5 * MIB);
  char* fence_b = malloc(3 * MIB);
  if (a == NULL || fence_a == NULL || b == NULL || fence_b == NULL) { fail("malloc failed"); return; }
  watch(a, 6 * MIB, "a cached block joined with another");
  watch(b, 5 * MIB, "the other cached block joined");
  free(a);
  free(b);
  mpcalloc_stats_t s0, s1;
  mpcalloc_stats_get(&s0);
  printf("  malloc(10 MiB) with 6 and 5 MiB blocks cached apart ...\n");
  fflush(stdout);
  Step s = step_begin("malloc 10 MiB from two cached blocks");
  char* q = malloc(10 * MIB);
  if (q == NULL) { fail("malloc failed"); return; }
  step_end(&s);
  mpcalloc_stats_get(&s1);
  if (s1.mapped_bytes > s0.mapped_bytes) fail("the blocks were not joined: %zu bytes mapped anew",
                                              (size_t)(s1.mapped_bytes - s0.mapped_bytes));
  if (s1.mremap_calls - s0.mremap_calls < 2) fail("fewer than two mremap calls: nothing moved");
  /* The pages came along: what the program wrote in them is there, not faulted-in zeros. */
  if ((unsigned char)q[MIB] != 0xa5) fail("the joined block does not hold the cached pages");
  memset(q, 1, 10 * MIB);
  free(q);
  free(fence_a);
  free(fence_b);
}

typedef struct {
  const char* name;
  void (*run)(void);
} Scenario;

static const Scenario kScenarios[] = {
    {"self_check", scenario_self_check},
    {"huge_free_budget0", scenario_huge_free_budget0},
    {"cache_evict", scenario_cache_evict},
    {"malloc_trim", scenario_malloc_trim},
    {"calloc_reuse", scenario_calloc_reuse},
    {"mremap", scenario_mremap},
    {"segments", scenario_segments},
    {"cache_grow", scenario_cache_grow},
    {"cache_join", scenario_cache_join},
    {"medium_purge", scenario_medium_purge},
};

int main(int argc, char** argv) {
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  const Scenario* sc = NULL;
  for (size_t i = 0; argc == 2 && i < sizeof kScenarios / sizeof kScenarios[0]; ++i) {
    if (strcmp(argv[1], kScenarios[i].name) == 0) sc = &kScenarios[i];
  }
  if (sc == NULL) {
    fprintf(stderr, "usage: %s SCENARIO; scenarios:", argv[0]);
    for (size_t i = 0; i < sizeof kScenarios / sizeof kScenarios[0]; ++i) {
      fprintf(stderr, " %s", kScenarios[i].name);
    }
    fprintf(stderr, "\n");
    return 2;
  }
  const char* mode = getenv("UCX_MEM_MMAP_HOOK_MODE");
  ucs_status_t st = ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, -1, on_vm_unmapped, NULL);
  if (st != UCS_OK) {
    fail("ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED) failed: status %d (hook mode %s)", (int)st,
         mode ? mode : "default");
    return 1;
  }
  check_malloc_is_mpcalloc("after installing the handler");
  printf("scenario %s (UCX hook mode %s, MPCALLOC_CACHE_MAX=%s, MPCALLOC_DECAY_MS=%s)\n", sc->name,
         mode ? mode : "default", getenv("MPCALLOC_CACHE_MAX") ? getenv("MPCALLOC_CACHE_MAX") : "default",
         getenv("MPCALLOC_DECAY_MS") ? getenv("MPCALLOC_DECAY_MS") : "default");
  fflush(stdout);
  sc->run();
  malloc_trim(0); /* the check's 8 MiB block then comes fresh from the OS, not a grown cached one */
  check_malloc_is_mpcalloc("at the end");
  printf("%s: %s: events %zu, munmap %zu, mremap %zu, released %zu pages (%zu MiB), unreported %zu\n",
         g_failed ? "FAIL" : "PASS", sc->name, g_totals.events, g_totals.munmaps, g_totals.mremaps,
         g_totals.released_pages, g_totals.released_pages * g_page / MIB, g_totals.unreported_pages);
  ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_vm_unmapped, NULL);
  return g_failed ? 1 : 0;
}
