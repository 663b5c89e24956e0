// The statistics writer shared by mpcalloc_stats_print, the exit report and the signal report:
// a signal report never waits for a busy place (it says it is incomplete instead), and text and
// JSON carry the same fields.
#include <gtest/gtest.h>

#include <csignal>
#include <cstddef>
#include <cstring>
#include <string>
#include <unistd.h>

#include "api/stats_report.h"
#include "mpcalloc/mpcalloc.h"
#include "source/block_source.h"
#include "source/place.h"

namespace {

using namespace mpcalloc;

// Everything `write` sends to a pipe, as a string.
template <typename Write>
std::string capture(Write write) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  write(fds[1]);
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return out;
}

// The place that holds the blocks of this thread.
int place_with_memory() {
  for (int p = 0; p < source::kPlaces; ++p) {
    if (source::stats(p).mapped_bytes != 0) return p;
  }
  return -1;
}

std::string place_entry(int p) {
  std::string name = p == source::kPlaceAny ? "any" : p == source::kPlaceInterleaved ? "interleaved" : "node" + std::to_string(p);
  return "{\"place\": \"" + name + "\"";
}

TEST(StatsReport, SignalReportSkipsABusyPlaceAndSaysSo) {
  void* block = mpcalloc_malloc(1000);
  ASSERT_NE(block, nullptr);
  int p = place_with_memory();
  ASSERT_GE(p, 0);
  source::Place& pl = source::place_of(p);

  // The lock is held, as by a thread the signal interrupted inside the allocator: the report
  // comes at once (a waiting one would hang this test), without that place.
  pl.lock.lock();
  std::string busy = capture([](int fd) { api::write_stats(fd, true, SIGUSR2); });
  std::string busy_text = capture([](int fd) { api::write_stats(fd, false, SIGUSR2); });
  pl.lock.unlock();
  EXPECT_NE(busy.find("\"signal\": " + std::to_string(SIGUSR2) + ", \"complete\": false}}\n"), std::string::npos) << busy;
  EXPECT_EQ(busy.find(place_entry(p)), std::string::npos) << busy;
  EXPECT_NE(busy_text.find("mpcalloc: stats on signal " + std::to_string(SIGUSR2) + "\n"), std::string::npos);
  EXPECT_NE(busy_text.find("mpcalloc:   incomplete: "), std::string::npos) << busy_text;

  std::string free_json = capture([](int fd) { api::write_stats(fd, true, SIGUSR2); });
  EXPECT_NE(free_json.find("\"complete\": true}}\n"), std::string::npos) << free_json;
  EXPECT_NE(free_json.find(place_entry(p)), std::string::npos) << free_json;
  std::string free_text = capture([](int fd) { api::write_stats(fd, false, SIGUSR2); });
  EXPECT_EQ(free_text.find("incomplete"), std::string::npos) << free_text;
  mpcalloc_free(block);
}

TEST(StatsReport, PrintedReportsHaveNoSignalFields) {
  std::string json = capture([](int fd) { mpcalloc_stats_print(fd, 1); });
  EXPECT_EQ(json.find("\"signal\""), std::string::npos) << json;
  EXPECT_EQ(json.find("\"complete\""), std::string::npos) << json;
  std::string text = capture([](int fd) { mpcalloc_stats_print(fd, 0); });
  EXPECT_EQ(text.rfind("mpcalloc: stats\n", 0), 0u) << text;
}

TEST(StatsReport, TextAndJsonCarryTheSameFields) {
  void* block = mpcalloc_malloc(100);
  std::string json = capture([](int fd) { mpcalloc_stats_print(fd, 1); });
  std::string text = capture([](int fd) { mpcalloc_stats_print(fd, 0); });
  mpcalloc_free(block);
  // Every process-wide JSON key (before "places") is a text line, in the same order.
  std::string head = json.substr(0, json.find(", \"places\""));
  size_t at = 0, in_text = 0;
  int fields = 0;
  while ((at = head.find('"', at)) != std::string::npos) {
    size_t end = head.find('"', at + 1);
    std::string key = head.substr(at + 1, end - at - 1);
    at = end + 1;
    if (key == "mpcalloc") continue;
    size_t line = text.find("mpcalloc:   " + key + " = ", in_text);
    ASSERT_NE(line, std::string::npos) << key << " missing from (or out of order in):\n" << text;
    in_text = line;
    ++fields;
  }
  EXPECT_GE(fields, 12);
}


// The record only grows at its end, and a program built with an older header passes the size
// it knows: the library writes that much and no byte more, and says how much it has.
TEST(StatsRead, WritesOnlyTheSizeGivenAndReportsTheRecordSize) {
  EXPECT_EQ(mpcalloc_stats_read(nullptr, 0), sizeof(mpcalloc_stats_t));
  void* big = mpcalloc_malloc(8 << 20);
  ASSERT_NE(big, nullptr);
  struct {
    mpcalloc_stats_t s;
    unsigned char guard[64];
  } buf;
  std::memset(&buf, 0xAB, sizeof(buf));
  const size_t part = offsetof(mpcalloc_stats_t, huge_bytes);  // an older, shorter record
  EXPECT_EQ(mpcalloc_stats_read(&buf.s, part), sizeof(mpcalloc_stats_t));
  EXPECT_GE(buf.s.huge_count, 1u);
  const auto* bytes = reinterpret_cast<const unsigned char*>(&buf);
  for (size_t i = part; i < sizeof(buf); ++i) ASSERT_EQ(bytes[i], 0xAB) << "byte " << i;
  // The header's form passes the whole record; the plain function fills version 0.1's.
  std::memset(&buf, 0xAB, sizeof(buf));
  mpcalloc_stats_get(&buf.s);
  EXPECT_GE(buf.s.huge_count, 1u);
  EXPECT_LT(buf.s.small_purged_bytes, size_t{1} << 48);  // written: not the 0xAB pattern
  for (unsigned char g : buf.guard) ASSERT_EQ(g, 0xAB);
  std::memset(&buf, 0xAB, sizeof(buf));
  void (*plain)(mpcalloc_stats_t*) = mpcalloc_stats_get;
  plain(&buf.s);
  EXPECT_GE(buf.s.huge_count, 1u);
  EXPECT_LT(buf.s.small_purged_bytes, size_t{1} << 48);
  for (unsigned char g : buf.guard) ASSERT_EQ(g, 0xAB);
  mpcalloc_free(big);
}

}  // namespace
