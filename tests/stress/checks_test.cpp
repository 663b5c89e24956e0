// MPCALLOC_CHECK=1: misuse is reported on one line of stderr with its kind and the exact
// address, then the process aborts (SIGABRT). Each case runs check_victim (linked with the
// override library, so plain free() is ours) in a child process; the victim prints the pointer
// it misuses with %p before misusing it. Without MPCALLOC_CHECK, valid use prints nothing.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

struct Outcome {
  int status = 0;
  std::string out;
  std::string err;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(r));
  return s;
}

// Cross builds run the tests under user-mode emulation, where a target program cannot exec
// another one by itself (the host kernel has no binfmt_misc entry for it): the victim then
// runs through the emulator command, e.g. "/usr/bin/qemu-aarch64 -L /usr/aarch64-linux-gnu".
#ifndef CHECK_VICTIM_EMULATOR
#define CHECK_VICTIM_EMULATOR ""
#endif

std::vector<std::string> victim_command(const char* mode) {
  std::vector<std::string> argv;
  std::string emulator = CHECK_VICTIM_EMULATOR;
  for (size_t at = 0; at < emulator.size();) {
    size_t end = emulator.find(' ', at);
    if (end == std::string::npos) end = emulator.size();
    if (end > at) argv.push_back(emulator.substr(at, end - at));
    at = end + 1;
  }
  argv.push_back(CHECK_VICTIM);
  argv.push_back(mode);
  return argv;
}

// check: "1" (checked mode), "0" (explicitly off) or nullptr (variable unset).
Outcome run_victim(const char* mode, const char* check) {
  Outcome o;
  std::vector<std::string> command = victim_command(mode);
  std::vector<char*> argv;
  for (std::string& a : command) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) {
    ADD_FAILURE() << "pipe";
    return o;
  }
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    if (check != nullptr) {
      setenv("MPCALLOC_CHECK", check, 1);
    } else {
      unsetenv("MPCALLOC_CHECK");
    }
    alarm(60);  // a hang in the victim ends it instead of the test
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  // The victim writes little: read stdout to its end, then stderr (no pipe can fill up).
  o.out = read_all(out[0]);
  o.err = read_all(err[0]);
  close(out[0]);
  close(err[0]);
  waitpid(pid, &o.status, 0);
  return o;
}

std::string address_of(const Outcome& o) {
  auto pos = o.out.find("addr=");
  if (pos == std::string::npos) return "";
  auto end = o.out.find('\n', pos);
  return o.out.substr(pos + 5, end - pos - 5);
}

std::vector<std::string> report_lines(const std::string& err) {
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < err.size()) {
    size_t nl = err.find('\n', at);
    std::string line = err.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (line.rfind("mpcalloc: ", 0) == 0) lines.push_back(line);
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return lines;
}

// The exact expectation: one line "mpcalloc: <kind> of <addr>" followed by the end of the
// line or a space (not more hex digits), naming the call; the process dies of SIGABRT.
// Returns the report line.
std::string expect_report(const char* mode, const std::string& kind, const char* call = "free") {
  SCOPED_TRACE(mode);
  Outcome o = run_victim(mode, "1");
  std::string addr = address_of(o);
  EXPECT_FALSE(addr.empty()) << "victim printed no address: " << o.out << o.err;
  if (addr.empty()) return "";
  // Cross-check: the victim's %p text is what snprintf("%p") gives for that value here.
  unsigned long long value = std::strtoull(addr.c_str(), nullptr, 16);
  char formatted[32];
  std::snprintf(formatted, sizeof formatted, "%p", reinterpret_cast<void*>(value));
  EXPECT_EQ(addr, formatted);

  EXPECT_TRUE(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGABRT)
      << "status " << o.status << " stderr: " << o.err;
  EXPECT_EQ(o.out.find("not detected"), std::string::npos);
  std::vector<std::string> lines = report_lines(o.err);
  EXPECT_EQ(lines.size(), 1u) << "stderr: " << o.err;
  if (lines.empty()) return "";
  const std::string& line = lines[0];
  std::string want = "mpcalloc: " + kind + " of " + formatted;
  EXPECT_EQ(line.rfind(want, 0), 0u) << "expected a line starting \"" << want << "\", got: " << line;
  if (line.size() > want.size()) {
    EXPECT_EQ(line[want.size()], ' ') << "address continues: " << line;
  }
  std::string in_call = std::string(" in ") + call + "()";
  EXPECT_NE(line.find(in_call), std::string::npos) << "expected \"" << in_call << "\": " << line;
  return line;
}

}  // namespace

TEST(Checks, DoubleFreeOfEveryKind) {
  expect_report("double-small", "double free");
  expect_report("double-medium", "double free");
  expect_report("double-huge", "double free");
  expect_report("double-calloc", "double free");
  expect_report("double-aligned", "double free");
}

TEST(Checks, SmallBlockReportNamesItsSizeClass) {
  std::string line = expect_report("double-small", "double free");
  size_t at = line.find("(size class ");
  ASSERT_NE(at, std::string::npos) << line;
  unsigned long cls = std::strtoul(line.c_str() + at + 12, nullptr, 10);
  // The 40-byte request lives in a class that holds it (plus any checked-mode canary).
  EXPECT_GE(cls, 40u) << line;
  EXPECT_LE(cls, 128u) << line;
  EXPECT_NE(line.find(" B)"), std::string::npos) << line;
}

TEST(Checks, InteriorPointerFree) {
  expect_report("interior-small", "interior pointer free");
  expect_report("interior-medium", "interior pointer free");
  expect_report("interior-huge", "interior pointer free");
}

TEST(Checks, MallocPointerPlusEight) {
  expect_report("interior8-small", "interior pointer free");
  expect_report("interior8-medium", "interior pointer free");
  expect_report("interior8-huge", "interior pointer free");
}

TEST(Checks, HeapOverflowCanary) {
  expect_report("overflow-small", "heap overflow");
  expect_report("overflow-medium", "heap overflow");
  expect_report("overflow-huge", "heap overflow");
  expect_report("overflow8-small", "heap overflow");
  expect_report("overflow-aligned", "heap overflow");
  expect_report("overflow-after-realloc", "heap overflow");
}

// Hardening: free of a pointer the allocator never handed out gives the message, not silent
// corruption.
TEST(Checks, WildPointersNeverAllocated) {
  expect_report("wild-stack", "invalid free");
  expect_report("wild-global", "invalid free");
  expect_report("wild-mmap", "invalid free");
  expect_report("wild-unmapped", "invalid free");
  expect_report("wild-thread-stack", "invalid free");
}

// Where the pointer lands relative to mappings depends on address-space randomisation: several
// runs, each must report.
TEST(Checks, WildPointerIntoLibcData) {
  for (int i = 0; i < 6; ++i) expect_report("wild-libc-data", "invalid free");
}

TEST(Checks, ReallocMisuseNamesRealloc) {
  expect_report("realloc-double", "double free", "realloc");
  expect_report("realloc-interior", "interior pointer free", "realloc");
  expect_report("realloc-wild", "invalid free", "realloc");
}

TEST(Checks, ValidProgramRunsCleanWithChecks) {
  for (const char* mode : {"valid", "valid-threads", "valid-fork"}) {
    Outcome o = run_victim(mode, "1");
    EXPECT_TRUE(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) << mode << ": " << o.err;
    EXPECT_NE(o.out.find("clean"), std::string::npos) << mode;
    EXPECT_TRUE(report_lines(o.err).empty()) << mode << ": " << o.err;
  }
}

TEST(Checks, ValidProgramPrintsNothingWithoutChecks) {
  for (const char* check : {static_cast<const char*>(nullptr), "0"}) {
    for (const char* mode : {"valid", "valid-threads", "valid-fork"}) {
      Outcome o = run_victim(mode, check);
      EXPECT_TRUE(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) << mode << ": " << o.err;
      EXPECT_NE(o.out.find("clean"), std::string::npos) << mode;
      EXPECT_EQ(o.err.find("mpcalloc"), std::string::npos) << mode << ": " << o.err;
    }
  }
}
