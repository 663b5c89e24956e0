// The one statistics writer behind mpcalloc_stats_print, the exit report and the signal report,
// and the snapshot it prints. Layer api (stats.cpp, stats_signal.cpp, malloc_info.cpp).
#pragma once
#include <cstddef>

#include "mpcalloc/mpcalloc.h"
#include "source/block_source.h"

namespace mpcalloc::api {

// How the numbers are read. kWait takes each place's lock (consistent figures per place);
// kNoWait never waits (signal handlers: the interrupted thread may hold a lock), so a busy
// place is left out and the snapshot says it is incomplete.
enum class StatsRead { kWait, kNoWait };

struct StatsSnapshot {
  mpcalloc_stats_t totals;
  int numa_nodes;
  bool complete;  // false: a place was busy (kNoWait) and its figures are missing
};
StatsSnapshot stats_snapshot(StatsRead how);

// One place's figures (`complete` goes false when it was busy under kNoWait).
source::SourceStats place_stats(int place, StatsRead how, bool* complete);
// Places that hold or held memory: the ones the reports list.
inline bool place_listed(const source::SourceStats& s) { return s.mapped_bytes != 0 || s.foreign_bytes != 0; }

// Writes the statistics to fd: text (several "mpcalloc: " lines) or JSON (one line), without
// malloc or stdio. `signo` != 0 marks a report made on that signal: read with kNoWait, and
// saying which signal and whether it is complete.
void write_stats(int fd, bool json, int signo);

// A report to MPCALLOC_STATS's destination (its file, %p = process id, or stderr), in its
// format (JSON for `json`, text otherwise). The first report of the process truncates the
// file, later ones append (signal reports, then the exit report). One report at a time:
// the exit report (signo 0) waits for a signal report in progress; a signal report arriving
// during another report is dropped (returns false). Async-signal-safe.
bool report_to_output(int signo);

// MPCALLOC_STATS_SIGNAL: installs the report on that signal (stats_signal.cpp). Called once,
// at load, after the options are read.
void install_stats_signal();

}  // namespace mpcalloc::api
