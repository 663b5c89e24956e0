// Drives the fuzz harness without libFuzzer: seeded random programs (always built, so the
// harness runs in every test configuration). Usage: fuzz_replay [iterations] [seed]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long iters = argc > 1 ? std::atol(argv[1]) : 3000;
  uint64_t x = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0x5eed;
  std::vector<uint8_t> buf;
  for (long it = 0; it < iters; ++it) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf.resize(64 + x % 1500);
    for (auto& b : buf) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x >> 32);
    }
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("fuzz replay: %ld programs ran clean\n", iters);
  return 0;
}
