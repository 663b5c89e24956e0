// Statistics (text and JSON, written with raw write), options by name, the exit report.
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "api/api_common.h"
#include "base/options.h"
#include "chunks/medium.h"
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
  out->small_bytes = s.small_segments * source::kSegmentSize;
  out->medium_bytes = s.medium_segments * source::kSegmentSize;
  out->medium_purged_bytes = chunks::medium_purged_bytes();
  out->cached_segment_bytes = s.cached_segments;
  out->mem_limit = s.mem_limit;
  out->limit_hits = s.limit_hits;
  out->madvise_calls = c.madvise_calls;
}

namespace {

// A place's name in the stats: its NUMA node, or what it stands for.
void place_name(os::Message& m, int place) {
  if (place == source::kPlaceAny) m.text("any");
  else if (place == source::kPlaceInterleaved) m.text("interleaved");
  else m.text("node").dec(static_cast<uint64_t>(place));
}

}  // namespace

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
      {"small_bytes", st.small_bytes, true},     {"medium_bytes", st.medium_bytes, true},
      {"medium_purged_bytes", st.medium_purged_bytes, true},
      {"cached_segment_bytes", st.cached_segment_bytes, true},
      {"mem_limit", st.mem_limit, true},         {"limit_hits", st.limit_hits, false},
      {"madvise_calls", st.madvise_calls, false},
      {"numa_nodes", static_cast<size_t>(heap::numa_nodes()), false},
  };
  // Per place (NUMA node, first-touch memory, interleaved): mapped, cached for reuse, in use,
  // and memory of another place handed out here (only in NUMA auto mode, out of memory).
  struct PlaceFields {
    const char* name;
    size_t source::SourceStats::*value;
  } place_fields[] = {
      {"mapped_bytes", &source::SourceStats::mapped_bytes},
      {"cached_bytes", &source::SourceStats::cached_bytes},
      {"huge_bytes", &source::SourceStats::huge_bytes},
      {"foreign_bytes", &source::SourceStats::foreign_bytes},
  };
  if (json) {
    os::Message m;
    m.text("{\"mpcalloc\": {");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
      m.text(i ? ", \"" : "\"").text(fields[i].name).text("\": ").dec(fields[i].value);
    }
    m.text(", \"places\": [").write_to(fd);
    bool first = true;
    for (int p = 0; p < source::kPlaces; ++p) {
      source::SourceStats ps = source::stats(p);
      if (ps.mapped_bytes == 0 && ps.foreign_bytes == 0) continue;
      os::Message e;
      e.text(first ? "{\"place\": \"" : ", {\"place\": \"");
      place_name(e, p);
      e.text("\"");
      for (const PlaceFields& f : place_fields) e.text(", \"").text(f.name).text("\": ").dec(ps.*f.value);
      e.text(", \"in_use_bytes\": ").dec(ps.mapped_bytes - ps.cached_bytes).text("}").write_to(fd);
      first = false;
    }
    os::Message tail;
    tail.text("]}}\n").write_to(fd);
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
  for (int p = 0; p < source::kPlaces; ++p) {
    source::SourceStats ps = source::stats(p);
    if (ps.mapped_bytes == 0 && ps.foreign_bytes == 0) continue;
    os::Message m;
    m.text("mpcalloc:   place ");
    place_name(m, p);
    m.text(": mapped ").size(ps.mapped_bytes).text(", cached ").size(ps.cached_bytes);
    m.text(", in use ").size(ps.mapped_bytes - ps.cached_bytes).text(", huge ").size(ps.huge_bytes);
    m.text(", foreign ").size(ps.foreign_bytes).text("\n").write_to(fd);
  }
}

MPCALLOC_EXPORT long long mpcalloc_option_get(const char* name) {
  unsigned id = base::option_find(name);
  return id == base::kOptCount ? -1 : base::option(id);
}

MPCALLOC_EXPORT int mpcalloc_option_set(const char* name, const char* value) {
  base::SetResult r = base::option_set(name, value);
  if (r == base::SetResult::kOk) {
    heap::apply_options();
    return 0;
  }
  os::Message m;
  m.text("mpcalloc: mpcalloc_option_set(").text(name != nullptr ? name : "(null)").text(", ");
  m.text(value != nullptr ? value : "(null)").text("): ");
  switch (r) {
    case base::SetResult::kUnknown: m.text("unknown option"); break;
    case base::SetResult::kFixed: m.text("read only at start-up (set its variable)"); break;
    default: m.text("bad value; kept ");
      if (unsigned id = base::option_find(name); id != base::kOptCount) {
        char old[base::kOptionPathMax + 16];
        base::format_option(id, old, sizeof(old));
        m.text(old);
      }
  }
  m.text("\n").write_to(2);
  errno = r == base::SetResult::kFixed ? EPERM : EINVAL;
  return -1;
}

namespace {
// Options are read at load time, so MPCALLOC_CHECK=1 covers a free that comes before the
// first malloc, and MPCALLOC_VERBOSE=1 prints even if the program never allocates.
// (Initialisation allocates nothing itself; its registrations may, after the flag is set.)
__attribute__((constructor)) void init_at_load() { heap::global_init(); }

// MPCALLOC_STATS=...:PATH: the file, with %p replaced by the process id; -1 if it cannot be
// opened (then the stats go to stderr).
int open_stats_file(const char* pattern) {
  char path[base::kOptionPathMax + 32];
  size_t n = 0;
  for (const char* p = pattern; *p != '\0' && n < sizeof(path) - 24; ++p) {
    if (p[0] == '%' && p[1] == 'p') {
      os::Message pid;
      pid.dec(static_cast<uint64_t>(getpid()));
      for (size_t i = 0; i < pid.length(); ++i) path[n++] = pid.data()[i];
      ++p;
    } else {
      path[n++] = *p;
    }
  }
  path[n] = '\0';
  return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

__attribute__((destructor)) void report_at_exit() {
  long long format = base::option(base::kOptStats);
  if (format == base::kOutputOff) return;
  const char* path = base::option_path(base::kOptStats);
  int fd = path[0] != '\0' ? open_stats_file(path) : -1;
  mpcalloc_stats_print(fd >= 0 ? fd : 2, format == base::kOutputJson);
  if (fd >= 0) close(fd);
}
}  // namespace
