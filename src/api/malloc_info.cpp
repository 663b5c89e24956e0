// malloc_info(3): mpcalloc's statistics in glibc's XML shape, one <heap> per place (NUMA node,
// first-touch memory, interleaved huge blocks) as glibc prints one per arena. Layer api.
#include <cerrno>
#include <cstdio>
#include <malloc.h>

#include "api/api_common.h"
#include "api/stats_report.h"
#include "source/block_source.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

namespace {

// What glibc's elements mean, and what mpcalloc puts there (docs/USAGE.md says the same):
//   fast    free chunks in fast bins: none (free blocks on thread heaps are the threads' own
//           and are not visible from here), so 0.
//   rest    other free memory the allocator keeps: the place's cache of free OS blocks.
//           Its count is 0: the source layer counts cached bytes, not cached blocks.
//   mmap    (totals) chunks with a mapping of their own: huge blocks in use.
//   system  memory the arena holds from the OS besides mmap chunks: segments and the cache
//           (mapped - huge in use); "max" is mpcalloc's peak of everything mapped, huge blocks
//           included, which it keeps for the whole process only.
//   aspace  address space behind `system` (all of it accessible: total = mprotect = system).
struct Heap {
  int place;
  size_t cached;
  size_t system;
  size_t huge_count;
  size_t huge_bytes;
};

void place_label(FILE* fp, int place) {
  if (place == source::kPlaceAny) fputs("any (first touch)", fp);
  else if (place == source::kPlaceInterleaved) fputs("interleaved", fp);
  else fprintf(fp, "NUMA node %d", place);
}

void write_totals(FILE* fp, size_t fast_count, size_t fast_size, size_t rest_count, size_t rest_size) {
  fprintf(fp, "<total type=\"fast\" count=\"%zu\" size=\"%zu\"/>\n", fast_count, fast_size);
  fprintf(fp, "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n", rest_count, rest_size);
}

void write_system(FILE* fp, size_t current, size_t max) {
  fprintf(fp, "<system type=\"current\" size=\"%zu\"/>\n", current);
  fprintf(fp, "<system type=\"max\" size=\"%zu\"/>\n", max);
  fprintf(fp, "<aspace type=\"total\" size=\"%zu\"/>\n", current);
  fprintf(fp, "<aspace type=\"mprotect\" size=\"%zu\"/>\n", current);
}

int malloc_info_impl(int options, FILE* fp) {
  if (options != 0 || fp == nullptr) {
    errno = EINVAL;
    return -1;
  }
  // Every figure is read before anything is written: writing may allocate (the stream's
  // buffer), and the numbers describe the moment of the call, not of the write.
  Heap heaps[source::kPlaces];
  int count = 0;
  size_t peak = 0;
  for (int p = 0; p < source::kPlaces; ++p) {
    bool complete = true;
    source::SourceStats s = api::place_stats(p, api::StatsRead::kWait, &complete);
    peak = s.peak_mapped_bytes;
    if (!api::place_listed(s)) continue;
    size_t huge = s.huge_bytes < s.mapped_bytes ? s.huge_bytes : s.mapped_bytes;
    heaps[count++] = {p, s.cached_bytes, s.mapped_bytes - huge, s.huge_count, huge};
  }
  size_t cached = 0, system = 0, huge_count = 0, huge_bytes = 0;
  fputs("<malloc version=\"1\">\n", fp);
  for (int i = 0; i < count; ++i) {
    const Heap& h = heaps[i];
    fprintf(fp, "<heap nr=\"%d\">\n<!-- place: ", i);
    place_label(fp, h.place);
    fputs(" -->\n<sizes>\n</sizes>\n", fp);
    write_totals(fp, 0, 0, 0, h.cached);
    write_system(fp, h.system, peak);
    fputs("</heap>\n", fp);
    cached += h.cached;
    system += h.system;
    huge_count += h.huge_count;
    huge_bytes += h.huge_bytes;
  }
  write_totals(fp, 0, 0, 0, cached);
  fprintf(fp, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n", huge_count, huge_bytes);
  write_system(fp, system, peak);
  fputs("</malloc>\n", fp);
  return 0;
}

}  // namespace

MPCALLOC_EXPORT int mpcalloc_malloc_info(int options, FILE* fp) { return malloc_info_impl(options, fp); }

#if MPCALLOC_OVERRIDE
MPCALLOC_EXPORT int malloc_info(int options, FILE* fp) { return malloc_info_impl(options, fp); }
#endif
