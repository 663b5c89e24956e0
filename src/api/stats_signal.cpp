// MPCALLOC_STATS_SIGNAL: the statistics on demand, printed by a signal handler for long jobs.
// Layer api (installed by the load-time constructor in stats.cpp).
#include <cerrno>
#include <csignal>
#include <cstring>

#include "api/stats_report.h"
#include "base/options.h"
#include "os/os_message.h"

namespace mpcalloc::api {

namespace {

// Async-signal-safe all the way down: the report reads place figures without waiting for a
// lock (report_to_output with a signal number), formats into stack buffers and writes with
// raw write(2); nothing allocates, nothing touches stdio.
void on_stats_signal(int signo) { report_to_output(signo); }

// "SIGUSR2" in messages (glibc's table of names: no allocation), or the number.
void name_signal(os::Message& m, int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) m.text("SIG").text(abbrev);
  else m.text("signal ").dec(static_cast<uint64_t>(sig));
}

void warn(int sig, const char* why) {
  os::Message m;
  m.text("mpcalloc: MPCALLOC_STATS_SIGNAL: ");
  name_signal(m, sig);
  m.text(why).text("; no statistics on it\n").write_to(2);
}

}  // namespace

void install_stats_signal() {
  long long signo = base::option(base::kOptStatsSignal);
  if (signo <= 0) return;
  int sig = static_cast<int>(signo);
  struct sigaction old;
  if (sigaction(sig, nullptr, &old) != 0) return warn(sig, " cannot be caught");
  // Someone (a library loaded before us, or an inherited SIG_IGN as under nohup) already chose
  // what this signal does: theirs stays, and the user hears why no report will come.
  // (sa_sigaction shares sa_handler's storage, so a SA_SIGINFO handler reads non-default too.)
  if (old.sa_handler != SIG_DFL) return warn(sig, " already has a handler (or is ignored)");
  struct sigaction sa = {};
  sa.sa_handler = on_stats_signal;
  sa.sa_flags = SA_RESTART;  // the program's read/write/wait calls go on as if nothing came
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, nullptr) != 0) warn(sig, " cannot be caught");
}

}  // namespace mpcalloc::api
