/* 2-rank Open MPI job over UCX (--mca pml ucx) with mpcalloc linked: malloc stays mpcalloc's
 * after UCX installs its memory hooks, every munmap/mremap mpcalloc makes reaches libucm's
 * VM_UNMAPPED handlers, and data sent from freed-and-remapped buffers arrives intact. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpcalloc/mpcalloc.h>
#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucm/api/ucm.h>

#define MIB ((size_t)1 << 20)

static atomic_size_t g_unmapped;

static void on_vm_unmapped(ucm_event_type_t type, ucm_event_t* event, void* arg) {
  (void)event;
  (void)arg;
  if (type == UCM_EVENT_VM_UNMAPPED) atomic_fetch_add(&g_unmapped, 1);
}

static int malloc_is_mpcalloc(void) {
  void* (*volatile alloc)(size_t) = malloc;
  Dl_info info;
  if (dladdr((void*)alloc, &info) == 0 || info.dli_fname == NULL || strstr(info.dli_fname, "libmpcalloc") == NULL) {
    return 0;
  }
  mpcalloc_stats_t a, b;
  mpcalloc_stats_get(&a);
  void* p = alloc(8 * MIB);
  mpcalloc_stats_get(&b);
  free(p);
  return b.huge_count == a.huge_count + 1;
}

static unsigned char pattern(int rank, int round, size_t i) {
  return (unsigned char)(rank * 131 + round * 17 + (i >> 12));
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int errors = 0;
  /* UCX is really in this process (the PML loaded it). */
  int ucx_loaded = dlopen("libucp.so.0", RTLD_NOW | RTLD_NOLOAD) != NULL;
  if (!ucx_loaded) {
    printf("rank %d: FAIL: libucp is not loaded: the UCX PML is not in use\n", rank);
    ++errors;
  }
  if (!malloc_is_mpcalloc()) {
    printf("rank %d: FAIL: after MPI_Init, malloc is not mpcalloc's (UCX replaced it?)\n", rank);
    ++errors;
  }
  if (ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, -1, on_vm_unmapped, NULL) != UCS_OK) {
    printf("rank %d: FAIL: ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED) failed\n", rank);
    ++errors;
  }
  mpcalloc_stats_t s0, s1;
  mpcalloc_stats_get(&s0);
  size_t e0 = atomic_load(&g_unmapped);
  int peer = (rank + 1) % size, from = (rank + size - 1) % size;
  for (int round = 0; round < 32; ++round) {
    /* Huge blocks of changing sizes: with MPCALLOC_CACHE_MAX=0 each is unmapped when freed,
     * and the next one often lands on the same addresses. */
    size_t n = 2 * MIB + (size_t)round * 256 * 1024 + 100;
    unsigned char* out = malloc(n);
    unsigned char* in = malloc(n);
    if (out == NULL || in == NULL) {
      printf("rank %d: FAIL: malloc(%zu) failed\n", rank, n);
      ++errors;
      break;
    }
    for (size_t i = 0; i < n; ++i) out[i] = pattern(rank, round, i);
    MPI_Sendrecv(out, (int)n, MPI_BYTE, peer, round, in, (int)n, MPI_BYTE, from, round, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    for (size_t i = 0; i < n; ++i) {
      if (in[i] != pattern(from, round, i)) {
        printf("rank %d: FAIL: round %d: byte %zu of %zu differs\n", rank, round, i, n);
        ++errors;
        break;
      }
    }
    free(out);
    free(in);
  }
  mpcalloc_stats_get(&s1);
  size_t events = atomic_load(&g_unmapped) - e0;
  size_t releases = (s1.munmap_calls - s0.munmap_calls) + (s1.mremap_calls - s0.mremap_calls);
  if (releases == 0) {
    printf("rank %d: FAIL: mpcalloc released nothing (is MPCALLOC_CACHE_MAX=0 set?)\n", rank);
    ++errors;
  }
  if (events < releases) {
    printf("rank %d: FAIL: %zu munmap/mremap calls by mpcalloc, only %zu VM_UNMAPPED events\n", rank,
           releases, events);
    ++errors;
  }
  if (!malloc_is_mpcalloc()) {
    printf("rank %d: FAIL: at the end, malloc is not mpcalloc's\n", rank);
    ++errors;
  }
  printf("rank %d: ucx %s, mpcalloc munmap+mremap %zu, VM_UNMAPPED events %zu, errors %d\n", rank,
         ucx_loaded ? "loaded" : "absent", releases, events, errors);
  fflush(stdout);
  int total = 0;
  MPI_Allreduce(&errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%s: %d ranks over UCX, %d errors\n", total ? "FAIL" : "PASS", size, total);
  ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_vm_unmapped, NULL);
  MPI_Finalize();
  return total ? 1 : 0;
}
