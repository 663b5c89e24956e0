// Drives the fuzz harness without libFuzzer, so it runs in every build (g++, sanitizers):
//   fuzz_replay [programs] [seed]   seeded random programs (default 3000, seed 0x5eed)
//   fuzz_replay FILE...             replays inputs (e.g. a crash file saved by libFuzzer)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sys/stat.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool is_file(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int replay_files(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    FILE* f = std::fopen(argv[i], "rb");
    if (f == nullptr) {
      std::perror(argv[i]);
      return 2;
    }
    std::vector<uint8_t> buf;
    int c;
    while ((c = std::fgetc(f)) != EOF) buf.push_back(static_cast<uint8_t>(c));
    std::fclose(f);
    std::printf("replaying %s (%zu bytes)\n", argv[i], buf.size());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("fuzz replay: %d inputs ran clean\n", argc - 1);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && is_file(argv[1])) return replay_files(argc, argv);
  long iters = argc > 1 ? std::atol(argv[1]) : 3000;
  uint64_t x = argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0x5eed;
  if (x == 0) x = 1;  // xorshift needs a non-zero state
  std::vector<uint8_t> buf;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (long it = 0; it < iters; ++it) {
    buf.resize(16 + next() % 700);
    for (auto& b : buf) b = static_cast<uint8_t>(next() >> 32);
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("fuzz replay: %ld random programs ran clean\n", iters);
  return 0;
}
