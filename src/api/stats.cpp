// Statistics (text and JSON, written with raw write) for mpcalloc_stats_print, the exit report
// and the signal report; options by name; the load-time initialisation. Layer api.
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "api/api_common.h"
#include "api/stats_report.h"
#include "base/options.h"
#include "chunks/medium.h"
#include "heap/heap.h"
#include "os/os_memory.h"
#include "os/os_message.h"
#include "source/block_source.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

namespace mpcalloc::api {

StatsSnapshot stats_snapshot(StatsRead how) {
  StatsSnapshot snap{};
  snap.complete = true;
  source::SourceStats s = how == StatsRead::kWait ? source::stats() : source::stats_try(-1, &snap.complete);
  os::OsCounters c = os::counters();
  heap::HeapStats h = heap::stats();
  mpcalloc_stats_t& t = snap.totals;
  t.mapped_bytes = s.mapped_bytes;
  t.peak_mapped_bytes = s.peak_mapped_bytes;
  t.segment_count = s.segment_count;
  t.huge_count = s.huge_count;
  t.huge_bytes = s.huge_bytes;
  t.cached_bytes = s.cached_bytes;
  t.mmap_calls = c.mmap_calls;
  t.munmap_calls = c.munmap_calls;
  t.mremap_calls = c.mremap_calls;
  t.heap_count = h.heap_count;
  t.remote_frees = h.remote_frees;
  t.small_bytes = s.small_segments * source::kSegmentSize;
  t.medium_bytes = s.medium_segments * source::kSegmentSize;
  t.medium_purged_bytes = chunks::medium_purged_bytes();
  t.small_purged_bytes = chunks::small_purged_bytes();
  t.cached_segment_bytes = s.cached_segments;
  t.mem_limit = s.mem_limit;
  t.limit_hits = s.limit_hits;
  t.madvise_calls = c.madvise_calls;
  snap.numa_nodes = heap::numa_nodes();
  return snap;
}

source::SourceStats place_stats(int place, StatsRead how, bool* complete) {
  if (how == StatsRead::kWait) return source::stats(place);
  bool got = true;
  source::SourceStats s = source::stats_try(place, &got);
  if (!got) *complete = false;
  return s;
}

}  // namespace mpcalloc::api

MPCALLOC_EXPORT size_t mpcalloc_stats_read(mpcalloc_stats_t* out, size_t size) {
  if (out == nullptr) return sizeof(mpcalloc_stats_t);
  mpcalloc_stats_t t = api::stats_snapshot(api::StatsRead::kWait).totals;
  std::memcpy(out, &t, size < sizeof(t) ? size : sizeof(t));
  return sizeof(t);
}

namespace {
// The record of version 0.1: what the plain function fills, for ever (fields added later are
// only for callers that pass their size).
constexpr size_t kStatsSizeV01 = offsetof(mpcalloc_stats_t, small_purged_bytes) + sizeof(size_t);
}  // namespace

MPCALLOC_EXPORT void(mpcalloc_stats_get)(mpcalloc_stats_t* out) {
  mpcalloc_stats_read(out, kStatsSizeV01);
}

namespace {

// A place's name in the stats: its NUMA node, or what it stands for.
void place_name(os::Message& m, int place) {
  if (place == source::kPlaceAny) m.text("any");
  else if (place == source::kPlaceInterleaved) m.text("interleaved");
  else m.text("node").dec(static_cast<uint64_t>(place));
}

// The process-wide fields, in print order; `bytes`: the text form adds a human size.
struct Field {
  const char* name;
  size_t mpcalloc_stats_t::*value;
  bool bytes;
};
constexpr Field kFields[] = {
    {"mapped_bytes", &mpcalloc_stats_t::mapped_bytes, true},
    {"peak_mapped_bytes", &mpcalloc_stats_t::peak_mapped_bytes, true},
    {"segment_count", &mpcalloc_stats_t::segment_count, false},
    {"huge_count", &mpcalloc_stats_t::huge_count, false},
    {"huge_bytes", &mpcalloc_stats_t::huge_bytes, true},
    {"cached_bytes", &mpcalloc_stats_t::cached_bytes, true},
    {"mmap_calls", &mpcalloc_stats_t::mmap_calls, false},
    {"munmap_calls", &mpcalloc_stats_t::munmap_calls, false},
    {"mremap_calls", &mpcalloc_stats_t::mremap_calls, false},
    {"heap_count", &mpcalloc_stats_t::heap_count, false},
    {"remote_frees", &mpcalloc_stats_t::remote_frees, false},
    {"small_bytes", &mpcalloc_stats_t::small_bytes, true},
    {"medium_bytes", &mpcalloc_stats_t::medium_bytes, true},
    {"small_purged_bytes", &mpcalloc_stats_t::small_purged_bytes, true},
    {"medium_purged_bytes", &mpcalloc_stats_t::medium_purged_bytes, true},
    {"cached_segment_bytes", &mpcalloc_stats_t::cached_segment_bytes, true},
    {"mem_limit", &mpcalloc_stats_t::mem_limit, true},
    {"limit_hits", &mpcalloc_stats_t::limit_hits, false},
    {"madvise_calls", &mpcalloc_stats_t::madvise_calls, false},
};

// Per place (NUMA node, first-touch memory, interleaved): mapped, cached for reuse, in use
// (mapped - cached), in huge blocks, and memory of another place handed out here (only in NUMA
// auto mode, out of memory). `label` is the text form's word.
struct PlaceField {
  const char* name;
  const char* label;
  size_t (*value)(const source::SourceStats&);
};
constexpr PlaceField kPlaceFields[] = {
    {"mapped_bytes", "mapped", [](const source::SourceStats& s) { return s.mapped_bytes; }},
    {"cached_bytes", "cached", [](const source::SourceStats& s) { return s.cached_bytes; }},
    {"in_use_bytes", "in use",
     [](const source::SourceStats& s) { return s.mapped_bytes > s.cached_bytes ? s.mapped_bytes - s.cached_bytes : 0; }},
    {"huge_bytes", "huge", [](const source::SourceStats& s) { return s.huge_bytes; }},
    {"foreign_bytes", "foreign", [](const source::SourceStats& s) { return s.foreign_bytes; }},
};

// JSON, one line: {"mpcalloc": {fields, "numa_nodes", "places": [...][, "signal", "complete"]}}.
// Written in pieces (each Message is a fixed buffer), so a place too many never truncates.
void write_json(int fd, const api::StatsSnapshot& snap, int signo, api::StatsRead how, bool* complete) {
  os::Message m;
  m.text("{\"mpcalloc\": {");
  for (const Field& f : kFields) m.text(&f == kFields ? "\"" : ", \"").text(f.name).text("\": ").dec(snap.totals.*f.value);
  m.text(", \"numa_nodes\": ").dec(static_cast<uint64_t>(snap.numa_nodes));
  m.text(", \"places\": [").write_to(fd);
  bool first = true;
  for (int p = 0; p < source::kPlaces; ++p) {
    source::SourceStats ps = api::place_stats(p, how, complete);
    if (!api::place_listed(ps)) continue;
    os::Message e;
    e.text(first ? "{\"place\": \"" : ", {\"place\": \"");
    place_name(e, p);
    e.text("\"");
    for (const PlaceField& f : kPlaceFields) e.text(", \"").text(f.name).text("\": ").dec(f.value(ps));
    e.text("}").write_to(fd);
    first = false;
  }
  os::Message tail;
  tail.text("]");
  if (signo != 0) {
    tail.text(", \"signal\": ").dec(static_cast<uint64_t>(signo));
    tail.text(", \"complete\": ").text(*complete ? "true" : "false");
  }
  tail.text("}}\n").write_to(fd);
}

void write_text(int fd, const api::StatsSnapshot& snap, int signo, api::StatsRead how, bool* complete) {
  os::Message head;
  head.text("mpcalloc: stats");
  if (signo != 0) head.text(" on signal ").dec(static_cast<uint64_t>(signo));
  head.text("\n").write_to(fd);
  for (const Field& f : kFields) {
    os::Message m;
    size_t v = snap.totals.*f.value;
    m.text("mpcalloc:   ").text(f.name).text(" = ").dec(v);
    if (f.bytes) m.text(" (").size(v).text(")");
    m.text("\n").write_to(fd);
  }
  os::Message nodes;
  nodes.text("mpcalloc:   numa_nodes = ").dec(static_cast<uint64_t>(snap.numa_nodes)).text("\n").write_to(fd);
  for (int p = 0; p < source::kPlaces; ++p) {
    source::SourceStats ps = api::place_stats(p, how, complete);
    if (!api::place_listed(ps)) continue;
    os::Message m;
    m.text("mpcalloc:   place ");
    place_name(m, p);
    const char* sep = ": ";
    for (const PlaceField& f : kPlaceFields) {
      m.text(sep).text(f.label).text(" ").size(f.value(ps));
      sep = ", ";
    }
    m.text("\n").write_to(fd);
  }
  if (!*complete) {
    os::Message note;
    note.text("mpcalloc:   incomplete: a place was busy when the signal came; its figures are left out\n");
    note.write_to(fd);
  }
}

}  // namespace

void api::write_stats(int fd, bool json, int signo) {
  StatsRead how = signo != 0 ? StatsRead::kNoWait : StatsRead::kWait;
  StatsSnapshot snap = stats_snapshot(how);
  bool complete = snap.complete;
  if (json) write_json(fd, snap, signo, how, &complete);
  else write_text(fd, snap, signo, how, &complete);
}

MPCALLOC_EXPORT void mpcalloc_stats_print(int fd, int json) { api::write_stats(fd, json != 0, 0); }

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
// MPCALLOC_STATS=...:PATH: the file, with %p replaced by the process id; -1 if it cannot be
// opened (then the report goes to stderr). Async-signal-safe (getpid, open).
int open_stats_file(const char* pattern, bool truncate) {
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
  return open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0644);
}

// Held while a report goes to MPCALLOC_STATS's destination, so two reports never interleave.
constinit std::atomic<bool> g_reporting{false};
// Whether this process has written its stats file already (later reports append to it).
constinit std::atomic<bool> g_file_started{false};
}  // namespace

bool api::report_to_output(int signo) {
  if (signo != 0) {
    // A signal may interrupt the very thread that is reporting: never wait here.
    if (g_reporting.exchange(true, std::memory_order_acquire)) return false;
  } else {
    while (g_reporting.exchange(true, std::memory_order_acquire)) sched_yield();
  }
  int saved_errno = errno;
  const char* path = base::option_path(base::kOptStats);
  int fd = -1;
  if (path[0] != '\0') fd = open_stats_file(path, !g_file_started.exchange(true, std::memory_order_relaxed));
  write_stats(fd >= 0 ? fd : 2, base::option(base::kOptStats) == base::kOutputJson, signo);
  if (fd >= 0) close(fd);
  errno = saved_errno;
  g_reporting.store(false, std::memory_order_release);
  return true;
}

namespace {
// A fork child has only the forking thread: a report another thread was writing at that instant
// will never end there, so the child starts with none in progress (its exit report would
// otherwise wait for ever).
void report_lock_reset_in_child() { g_reporting.store(false, std::memory_order_relaxed); }

// Options are read at load time, so MPCALLOC_CHECK=1 covers a free that comes before the
// first malloc, and MPCALLOC_VERBOSE=1 prints even if the program never allocates.
// (Initialisation allocates nothing itself; its registrations may, after the flag is set.)
// The stats signal's handler goes in once the options are known.
__attribute__((constructor)) void init_at_load() {
  heap::global_init();
  if (base::option(base::kOptStats) != base::kOutputOff || base::option(base::kOptStatsSignal) != 0) {
    pthread_atfork(nullptr, nullptr, report_lock_reset_in_child);  // may allocate: after init
  }
  api::install_stats_signal();
}

__attribute__((destructor)) void report_at_exit() {
  if (base::option(base::kOptStats) != base::kOutputOff) api::report_to_output(0);
}
}  // namespace
