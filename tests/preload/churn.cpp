// Run with and without LD_PRELOAD=libmpcalloc.so (under qemu-aarch64 in the aarch64 step): C++
// threads created round after round, each building std containers of many sizes and consuming
// (freeing) what another thread built in the round before. Output depends only on the data.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr int kThreads = 6;

struct Batch {
  std::map<std::string, std::vector<uint32_t>> by_name;
  std::unordered_map<uint64_t, std::string> by_id;
  std::deque<std::vector<char>> buffers;  // small, medium (up to 96 KiB) and one huge
  std::list<std::string> log;
};

uint64_t next(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

std::unique_ptr<Batch> build(int round, int thread, int scale) {
  uint64_t s = 0x9e3779b97f4a7c15u ^ (uint64_t(round) << 32) ^ uint64_t(thread + 1);
  auto b = std::make_unique<Batch>();
  for (int i = 0; i < 300 * scale; ++i) {
    uint64_t r = next(s);
    std::string name = "k" + std::to_string(r % 257);
    b->by_name[name].push_back(static_cast<uint32_t>(r));
    b->by_id[r % 4099] = std::string(static_cast<size_t>(r % 200), char('a' + r % 26));
    if (i % 16 == 0) b->buffers.emplace_back(static_cast<size_t>(r % (96 * 1024)), char(r));
    if (i % 3 == 0) b->log.push_back(name + ":" + std::to_string(r % 1000));
    if (i % 64 == 0 && !b->buffers.empty()) b->buffers.pop_front();  // a free amid mallocs
  }
  b->buffers.emplace_back((size_t{3} << 20) + next(s) % 4096, char(thread));  // a huge block
  return b;
}

// Sums a batch and frees it (on whichever thread calls this).
uint64_t consume(std::unique_ptr<Batch> b) {
  uint64_t sum = 0;
  for (auto& [k, v] : b->by_name) {
    sum += k.size() * 31 + v.size();
    for (uint32_t x : v) sum += x % 1009;
  }
  for (auto& [id, str] : b->by_id) sum += id * 7 + str.size() + (str.empty() ? 0 : uint8_t(str[0]));
  for (auto& buf : b->buffers) sum += buf.size() + (buf.empty() ? 0 : uint8_t(buf.back()));
  for (auto& line : b->log) sum += line.size();
  b.reset();
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 12;
  const int scale = argc > 2 ? std::atoi(argv[2]) : 4;
  // Built in round r (slot t by thread t), freed in round r + 1 by thread t - 1.
  std::vector<std::unique_ptr<Batch>> previous(kThreads), current(kThreads);
  uint64_t total = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<uint64_t> sums(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Every block of the batch is freed by a thread that did not allocate it.
        auto& theirs = previous[(t + 1) % kThreads];
        if (theirs) sums[t] += consume(std::move(theirs));
        current[t] = build(r, t, scale);
        sums[t] += current[t]->by_name.size() + current[t]->log.size();
      });
    }
    for (auto& th : threads) th.join();
    previous.swap(current);
    uint64_t round_sum = 0;
    for (uint64_t s : sums) round_sum += s;
    total += round_sum;
    std::printf("round %d: %llu\n", r, static_cast<unsigned long long>(round_sum));
  }
  for (auto& b : previous) {
    if (b) total += consume(std::move(b));
  }
  std::printf("total %llu\n", static_cast<unsigned long long>(total));
  return 0;
}
