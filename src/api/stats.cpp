// Statistics (text and JSON, written with raw write), options by name, the exit report.
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

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
