// MPCALLOC_CHECK=1: misuse is reported with its address and the process aborts. Each case
// runs check_victim in a child process and reads its stdout (the address) and stderr.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace {

struct Outcome {
  int status;
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

Outcome run_victim(const char* mode, bool check) {
  int out[2], err[2];
  EXPECT_EQ(pipe(out), 0);
  EXPECT_EQ(pipe(err), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    if (check) setenv("MPCALLOC_CHECK", "1", 1);
    else unsetenv("MPCALLOC_CHECK");
    execl(CHECK_VICTIM, CHECK_VICTIM, mode, static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  Outcome o;
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

void expect_report(const char* mode, const std::string& kind) {
  Outcome o = run_victim(mode, true);
  std::string addr = address_of(o);
  ASSERT_FALSE(addr.empty()) << mode << ": victim printed no address: " << o.out;
  EXPECT_TRUE(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGABRT)
      << mode << ": status " << o.status << " stderr: " << o.err;
  std::string want = "mpcalloc: " + kind + " of " + addr;
  EXPECT_NE(o.err.find(want), std::string::npos) << mode << ": expected \"" << want
                                                  << "\" in stderr: " << o.err;
  EXPECT_EQ(o.out.find("not detected"), std::string::npos) << mode;
}

}  // namespace

TEST(Checks, DoubleFreeSmallMediumHuge) {
  expect_report("double-small", "double free");
  expect_report("double-medium", "double free");
  expect_report("double-huge", "double free");
}

TEST(Checks, InteriorPointer) {
  expect_report("interior-small", "interior pointer free");
  expect_report("interior-medium", "interior pointer free");
  expect_report("interior-huge", "interior pointer free");
}

TEST(Checks, OverflowPastTheEnd) {
  expect_report("overflow-small", "heap overflow");
  expect_report("overflow-medium", "heap overflow");
  expect_report("overflow-huge", "heap overflow");
}

TEST(Checks, WildPointers) {
  expect_report("wild-stack", "invalid free");
  expect_report("wild-unmapped", "invalid free");
}

TEST(Checks, ReallocOfFreedBlock) { expect_report("realloc-double", "double free"); }

TEST(Checks, SmallClassNamedInMessage) {
  Outcome o = run_victim("double-small", true);
  EXPECT_NE(o.err.find("(size class "), std::string::npos) << o.err;
  EXPECT_NE(o.err.find(" in free()"), std::string::npos) << o.err;
}

TEST(Checks, ValidProgramRunsCleanWithChecks) {
  Outcome o = run_victim("valid", true);
  EXPECT_TRUE(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) << o.err;
  EXPECT_NE(o.out.find("clean"), std::string::npos);
  EXPECT_EQ(o.err.find("mpcalloc:"), std::string::npos) << o.err;
}

TEST(Checks, NoReportsWithoutChecksOnValidUse) {
  Outcome o = run_victim("valid", false);
  EXPECT_TRUE(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) << o.err;
  EXPECT_EQ(o.err.find("mpcalloc:"), std::string::npos) << o.err;
}
