// Statistics (text and JSON, written with raw write), options by name, the exit report.
#include <cstring>

#include "api/api_common.h"
#include "base/options.h"
#include "heap/heap.h"
#include "os/os_memory.h"
#include "os/os_message.h"
#include "source/block_source.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

MPCALLOC_EXPORT void mpcalloc_stats_get(mpcalloc_stats_t* out) {
  if (out == nullptr) return;
  source::SourceStats s = source::stats();
  os::OsCounters c = os::counters();
  heap::HeapStats h = heap::stats();
  out->mapped_bytes = s.mapped_bytes;
  out->peak_mapped_bytes = s.peak_mapped_bytes;
  out->segment_count = s.segment_count;
  out->huge_count = s.huge_count;
  out->huge_bytes = s.huge_bytes;
  out->cached_bytes = s.cached_bytes;
  out->mmap_calls = c.mmap_calls;
  out->munmap_calls = c.munmap_calls;
  out->mremap_calls = c.mremap_calls;
  out->heap_count = h.heap_count;
  out->remote_frees = h.remote_frees;
}

MPCALLOC_EXPORT void mpcalloc_stats_print(int fd, int json) {
  mpcalloc_stats_t st;
  mpcalloc_stats_get(&st);
  struct Field {
    const char* name;
    size_t value;
    bool bytes;
  } fields[] = {
      {"mapped_bytes", st.mapped_bytes, true},   {"peak_mapped_bytes", st.peak_mapped_bytes, true},
      {"segment_count", st.segment_count, false}, {"huge_count", st.huge_count, false},
      {"huge_bytes", st.huge_bytes, true},       {"cached_bytes", st.cached_bytes, true},
      {"mmap_calls", st.mmap_calls, false},      {"munmap_calls", st.munmap_calls, false},
      {"mremap_calls", st.mremap_calls, false},  {"heap_count", st.heap_count, false},
      {"remote_frees", st.remote_frees, false},
  };
  if (json) {
    os::Message m;
    m.text("{\"mpcalloc\": {");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
      m.text(i ? ", \"" : "\"").text(fields[i].name).text("\": ").dec(fields[i].value);
    }
    m.text("}}\n").write_to(fd);
    return;
  }
  os::Message head;
  head.text("mpcalloc: stats\n").write_to(fd);
  for (const Field& f : fields) {
    os::Message m;
    m.text("mpcalloc:   ").text(f.name).text(" = ").dec(f.value);
    if (f.bytes) m.text(" (").size(f.value).text(")");
    m.text("\n").write_to(fd);
  }
}

MPCALLOC_EXPORT long long mpcalloc_option_get(const char* name) {
  if (name == nullptr) return -1;
  for (unsigned i = 0; i < base::kOptCount; ++i) {
    if (std::strcmp(base::option_desc(i).name, name) == 0) return base::option(i);
  }
  return -1;
}

namespace {
// Options are read at load time, so MPCALLOC_CHECK=1 covers a free that comes before the
// first malloc, and MPCALLOC_VERBOSE=1 prints even if the program never allocates.
// (Initialisation allocates nothing itself; its registrations may, after the flag is set.)
__attribute__((constructor)) void init_at_load() { heap::global_init(); }

__attribute__((destructor)) void report_at_exit() {
  if (base::option(base::kOptStats) != 0) mpcalloc_stats_print(2, 0);
}
}  // namespace
