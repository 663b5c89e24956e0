/* mpcalloc public API: the malloc family under the mpcalloc_ prefix, plus control and stats.
 * Usable beside another malloc (e.g. inside sanitizer builds, where the sanitizer owns malloc).
 * Plain C header, includable from C and C++. */
#ifndef MPCALLOC_MPCALLOC_H
#define MPCALLOC_MPCALLOC_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPCALLOC_VERSION_MAJOR 0
#define MPCALLOC_VERSION_MINOR 1

/* ---- the malloc family, same semantics as glibc / POSIX ---- */
void* mpcalloc_malloc(size_t size);
void mpcalloc_free(void* ptr);
void* mpcalloc_calloc(size_t count, size_t size);
void* mpcalloc_realloc(void* ptr, size_t size);
void* mpcalloc_reallocarray(void* ptr, size_t count, size_t size);
int mpcalloc_posix_memalign(void** out, size_t alignment, size_t size);
void* mpcalloc_aligned_alloc(size_t alignment, size_t size);
void* mpcalloc_memalign(size_t alignment, size_t size);
void* mpcalloc_valloc(size_t size);
void* mpcalloc_pvalloc(size_t size);
size_t mpcalloc_malloc_usable_size(void* ptr);
int mpcalloc_malloc_trim(size_t pad);
void mpcalloc_free_sized(void* ptr, size_t size);
void mpcalloc_free_aligned_sized(void* ptr, size_t alignment, size_t size);

/* ---- control ---- */
/* Returns free memory kept in caches to the OS (all threads' caches the caller can reach). */
void mpcalloc_collect(int force);
/* Value of a named option (e.g. "check", "cache_max"; or its variable, "MPCALLOC_CACHE_MAX");
 * -1 if unknown. Choices (e.g. "numa") read as the index of their word in docs/OPTIONS.md. */
long long mpcalloc_option_get(const char* name);
/* Sets a run-time option ("cache_max", "decay_ms") from text, parsed as the environment is
 * ("64M", "200"). Returns 0, or -1 with errno EINVAL (unknown name, bad value: the old value
 * stays and one line on stderr says why) or EPERM (an option read only at start-up). */
int mpcalloc_option_set(const char* name, const char* value);

/* ---- NUMA ----
 * With more than one node (and MPCALLOC_NUMA not "off"), a thread whose CPU affinity lies
 * within one node allocates from heaps and caches of that node: fresh memory is bound there
 * and recycled memory never crosses nodes. The affinity is read when a thread first allocates;
 * a thread that changes it afterwards calls mpcalloc_thread_rebind():
 *
 *     cpu_set_t set; CPU_ZERO(&set); CPU_SET(8, &set);         // CPU 8 is on node 1
 *     pthread_setaffinity_np(pthread_self(), sizeof set, &set);
 *     int node = mpcalloc_thread_rebind();                    // 1: new blocks are node 1's
 *     double* a = malloc(n * sizeof *a);                      // placed on node 1
 *     mpcalloc_migrate(old_block, 1);                         // move an older block there
 */
/* Number of NUMA nodes mpcalloc places memory on (1 without NUMA or with MPCALLOC_NUMA=off). */
int mpcalloc_numa_nodes(void);
/* Re-reads the calling thread's CPU affinity: from now on it allocates from heaps of the node
 * its CPUs belong to (blocks it allocated before stay valid). Returns that node, or -1 when
 * the thread is not bound to one node (it then gets first-touch memory) or NUMA is not used. */
int mpcalloc_thread_rebind(void);
/* Moves the pages of the block ptr (from this allocator) to NUMA node `node`. A huge block
 * (over 1 MiB) moves whole and belongs to that node from then on; for smaller blocks the pages
 * holding the block move (they may hold neighbours too). Returns 0, or -1 with errno: EINVAL
 * (not a block of ours, or not an online node), or the kernel's error (EIO, ENOMEM, EBUSY...). */
int mpcalloc_migrate(void* ptr, int node);

/* ---- statistics ---- */
typedef struct mpcalloc_stats_s {
  size_t mapped_bytes;      /* bytes currently mapped from the OS (segments + huge blocks) */
  size_t peak_mapped_bytes; /* high-water mark of mapped_bytes */
  size_t segment_count;     /* segments (small/medium) currently mapped */
  size_t huge_count;        /* huge blocks currently in use */
  size_t huge_bytes;        /* bytes of huge blocks in use (mapped) */
  size_t cached_bytes;      /* free bytes kept in the block cache, not returned to the OS */
  size_t mmap_calls;        /* mmap calls made so far */
  size_t munmap_calls;      /* munmap calls made so far */
  size_t mremap_calls;      /* mremap calls made so far */
  size_t heap_count;        /* thread heaps created (live + pooled) */
  size_t remote_frees;      /* frees of memory owned by another thread's heap */
  /* Memory control, by kind: what is in use, kept for reuse, given back. */
  size_t small_bytes;          /* segments in use by small-object runs */
  size_t medium_bytes;         /* segments in use by medium chunks (8 KiB - 1 MiB) */
  size_t medium_purged_bytes;  /* pages of free medium chunks given back to the OS (mapped) */
  size_t cached_segment_bytes; /* of cached_bytes: free segments (the rest: free huge blocks) */
  size_t mem_limit;            /* MPCALLOC_MEM_LIMIT in force, bytes (0: none) */
  size_t limit_hits;           /* mappings refused by the limit (allocations that failed) */
  size_t madvise_calls;        /* madvise calls made so far (purges, huge-page advice) */
  size_t small_purged_bytes;   /* pages of unused small runs given back to the OS (mapped) */
} mpcalloc_stats_t;

/* Fills the first `size` bytes of *out (at most the whole record, nothing when out is NULL) and
 * returns the size of the record this library fills. The record only grows at its end: a
 * program passes the sizeof of the record it was built with, and gets the fields it knows
 * from any later library, never a write past its record. */
size_t mpcalloc_stats_read(mpcalloc_stats_t* out, size_t size);
/* Fills *out with the fields of the header the program was built with. */
#define mpcalloc_stats_get(out) ((void)mpcalloc_stats_read((out), sizeof *(out)))
/* The function of that name (for a pointer to it, dlsym, and programs built before
 * mpcalloc_stats_read existed): fills the fields up to small_purged_bytes, the record of
 * version 0.1, whatever the library's record has grown to. */
void(mpcalloc_stats_get)(mpcalloc_stats_t* out);
/* Writes a human summary (json == 0) or a JSON object (json != 0) to fd. */
void mpcalloc_stats_print(int fd, int json);
/* glibc's malloc_info(3) (exported under that name too, unless built without overrides): the
 * statistics as XML in glibc's shape, one <heap> per place (NUMA node, first-touch memory,
 * interleaved blocks). Returns 0, or -1 with errno EINVAL when options != 0 or fp is NULL.
 * Writes with stdio (which may allocate the stream's buffer); not for signal handlers: there,
 * MPCALLOC_STATS_SIGNAL prints the statistics safely. */
int mpcalloc_malloc_info(int options, FILE* fp);

/* ---- testing hooks (not for production use) ---- */
/* Makes the n-th next OS call (mmap, mremap, madvise) counted from now fail (n >= 1);
 * n == 0 disables. Used by the fault-injection tests. */
void mpcalloc_test_fail_os_after(unsigned long n);

#ifdef __cplusplus
}
#endif

#endif /* MPCALLOC_MPCALLOC_H */
