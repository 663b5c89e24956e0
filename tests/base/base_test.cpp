// Layer base: size classes, bit helpers, spinlock, MPSC stack, intrusive list, options.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <set>
#include <thread>
#include <vector>

#include "base/bits.h"
#include "base/clock.h"
#include "base/intrusive_list.h"
#include "base/mpsc_stack.h"
#include "base/options.h"
#include "base/size_classes.h"
#include "base/spinlock.h"

using namespace mpcalloc::base;

TEST(SizeClasses, EveryRequestFitsItsClassWithBoundedWaste) {
  for (size_t n = 0; n <= kSmallMax; ++n) {
    unsigned c = small_class_of(n);
    ASSERT_LT(c, kSmallClasses) << n;
    size_t s = small_class_size(c);
    ASSERT_GE(s, n) << n;
    if (c > 0) {
      ASSERT_LT(small_class_size(c - 1), n) << "not the smallest fit " << n;
    }
    if (n > 128) {
      ASSERT_LE(s * 4, n * 5) << "waste above 25% at " << n;
    } else {
      ASSERT_LT(s - (n == 0 ? 1 : n), 16u) << "16-byte spacing up to 128 B, at " << n;
    }
  }
}

TEST(SizeClasses, SizesIncreaseAreAlignedAndIncludePowersOfTwo) {
  std::set<size_t> sizes;
  for (unsigned c = 0; c < kSmallClasses; ++c) {
    size_t s = small_class_size(c);
    EXPECT_EQ(s % 16, 0u);
    if (c > 0) {
      EXPECT_GT(s, small_class_size(c - 1));
    }
    sizes.insert(s);
  }
  for (size_t p = 16; p <= kSmallMax; p *= 2) EXPECT_TRUE(sizes.count(p)) << p;
}

TEST(Bits, Helpers) {
  EXPECT_TRUE(is_pow2(1));
  EXPECT_TRUE(is_pow2(4096));
  EXPECT_FALSE(is_pow2(0));
  EXPECT_FALSE(is_pow2(24));
  EXPECT_EQ(align_up(1, 16), 16u);
  EXPECT_EQ(align_up(32, 16), 32u);
  EXPECT_EQ(align_down(4097, 4096), 4096u);
  EXPECT_EQ(log2_floor(1), 0u);
  EXPECT_EQ(log2_floor(4095), 11u);
  EXPECT_EQ(next_pow2(24), 32u);
  EXPECT_EQ(next_pow2(32), 32u);
  EXPECT_EQ(lowest_bit(0x50), 4u);
}

TEST(SpinLock, MutualExclusionUnderContention) {
  SpinLock lock;
  long counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        LockGuard g(lock);
        ++counter;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, 400000);
  EXPECT_TRUE(lock.try_lock());
  EXPECT_FALSE(lock.try_lock());
  lock.reset();
  EXPECT_TRUE(lock.try_lock());
  lock.unlock();
}

TEST(MpscStack, EveryNodeReceivedExactlyOnce) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 50000;
  static MpscNode nodes[kProducers * kPerProducer];
  MpscStack stack;
  std::atomic<bool> done{false};
  std::vector<int> seen(kProducers * kPerProducer, 0);
  std::thread consumer([&] {
    auto drain = [&] {
      for (MpscNode* n = stack.take_all(); n != nullptr;) {
        MpscNode* next = n->next;
        ++seen[static_cast<size_t>(n - nodes)];
        n = next;
      }
    };
    while (!done.load()) drain();
    drain();
  });
  std::vector<std::thread> ps;
  for (int p = 0; p < kProducers; ++p) {
    ps.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) stack.push(&nodes[p * kPerProducer + i]);
    });
  }
  for (auto& t : ps) t.join();
  done = true;
  consumer.join();
  for (int v : seen) ASSERT_EQ(v, 1);
  EXPECT_TRUE(stack.empty());
}

TEST(MpscStack, PushChain) {
  MpscNode a, b, c;
  MpscStack s;
  s.push(&c);
  a.next = &b;
  s.push_chain(&a, &b);
  MpscNode* n = s.take_all();
  ASSERT_EQ(n, &a);
  ASSERT_EQ(n->next, &b);
  ASSERT_EQ(n->next->next, &c);
  EXPECT_EQ(s.take_all(), nullptr);
}

struct Item {
  Item* next = nullptr;
  Item* prev = nullptr;
  int v = 0;
};

TEST(IntrusiveList, PushRemovePop) {
  IntrusiveList<Item> l;
  Item a, b, c;
  a.v = 1;
  b.v = 2;
  c.v = 3;
  EXPECT_TRUE(l.empty());
  l.push_front(&a);
  l.push_front(&b);
  l.push_front(&c);  // c b a
  l.remove(&b);
  EXPECT_EQ(l.head, &c);
  EXPECT_EQ(c.next, &a);
  EXPECT_EQ(a.prev, &c);
  EXPECT_EQ(l.pop_front(), &c);
  EXPECT_EQ(l.pop_front(), &a);
  EXPECT_EQ(l.pop_front(), nullptr);
}

TEST(Options, Parsing) {
  long long v = 0;
  EXPECT_TRUE(parse_option_value("123", OptionType::kSize, &v));
  EXPECT_EQ(v, 123);
  EXPECT_TRUE(parse_option_value("64K", OptionType::kSize, &v));
  EXPECT_EQ(v, 64 << 10);
  EXPECT_TRUE(parse_option_value("256M", OptionType::kSize, &v));
  EXPECT_EQ(v, 256ll << 20);
  EXPECT_TRUE(parse_option_value("2GiB", OptionType::kSize, &v));
  EXPECT_EQ(v, 2ll << 30);
  EXPECT_TRUE(parse_option_value("yes", OptionType::kBool, &v));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(parse_option_value("0", OptionType::kBool, &v));
  EXPECT_EQ(v, 0);
  v = 42;
  EXPECT_FALSE(parse_option_value("", OptionType::kSize, &v));
  EXPECT_FALSE(parse_option_value("12Q", OptionType::kSize, &v));
  EXPECT_FALSE(parse_option_value("-5", OptionType::kMillis, &v));
  EXPECT_FALSE(parse_option_value("maybe", OptionType::kBool, &v));
  EXPECT_FALSE(parse_option_value(nullptr, OptionType::kBool, &v));
  EXPECT_EQ(v, 42);
}

TEST(Options, TableIsComplete) {
  for (unsigned i = 0; i < kOptCount; ++i) {
    const OptionDesc& d = option_desc(i);
    ASSERT_NE(d.name, nullptr);
    EXPECT_EQ(std::string(d.env).rfind("MPCALLOC_", 0), 0u) << d.env;
    EXPECT_GT(std::string(d.help).size(), 20u) << d.env;
  }
}

TEST(SizeClasses, EachClassSizeMapsBackToItsClass) {
  for (unsigned c = 0; c < kSmallClasses; ++c) {
    EXPECT_EQ(small_class_of(small_class_size(c)), c) << c;
    EXPECT_EQ(small_class_of(small_class_size(c) + 1 > kSmallMax ? kSmallMax : small_class_size(c) + 1),
              c + 1 < kSmallClasses ? c + 1 : c);
  }
  EXPECT_EQ(small_class_size(small_class_of(0)), 16u);
  EXPECT_EQ(small_class_size(small_class_of(1)), 16u);
  EXPECT_EQ(small_class_size(kSmallClasses - 1), kSmallMax);
  // Above 1 KiB every class is a multiple of 256 (the fast path's 256-byte cells rely on it).
  for (unsigned c = 0; c < kSmallClasses; ++c) {
    if (small_class_size(c) > kDirectMax) {
      EXPECT_EQ(small_class_size(c) % 256, 0u) << c;
    }
  }
  EXPECT_EQ(kDirectSlots, kDirectMax / 16 + 1);
}

TEST(SizeClasses, RequestsInOne256ByteCellShareAClassAboveTheDirectRange) {
  // heap::malloc_fast indexes big sizes by (size + 255) >> 8: every size of a cell must have
  // the class of the cell's top size.
  for (size_t n = kDirectMax + 1; n <= kSmallMax; ++n) {
    size_t top = ((n + 255) >> 8) << 8;
    ASSERT_EQ(small_class_of(n), small_class_of(top)) << n;
  }
}

TEST(Bits, EdgeValues) {
  static_assert(is_pow2(size_t{1} << 63));
  static_assert(next_pow2(0) == 1 && next_pow2(1) == 1 && next_pow2(2) == 2 && next_pow2(3) == 4);
  EXPECT_EQ(next_pow2((size_t{1} << 40) + 1), size_t{1} << 41);
  EXPECT_EQ(next_pow2(size_t{1} << 62), size_t{1} << 62);
  EXPECT_EQ(log2_floor(size_t{1} << 63), 63u);
  EXPECT_EQ(log2_floor(~size_t{0}), 63u);
  EXPECT_EQ(lowest_bit(uint64_t{1} << 63), 63u);
  EXPECT_EQ(lowest_bit(~uint64_t{0}), 0u);
  EXPECT_EQ(align_up(0, 4096), 0u);
  EXPECT_EQ(align_up(4097, 4096), 8192u);
  EXPECT_EQ(align_down(4095, 4096), 0u);
  EXPECT_EQ(align_down(~uintptr_t{0}, size_t{1} << 22), ~uintptr_t{0} << 22);
  for (size_t x = 1; x < 5000; ++x) {
    size_t p = next_pow2(x);
    ASSERT_TRUE(is_pow2(p));
    ASSERT_GE(p, x);
    ASSERT_LT(p / 2, x);
    ASSERT_EQ(size_t{1} << log2_floor(x), p == x ? x : p / 2);
    ASSERT_EQ(align_up(x, 64) % 64, 0u);
    ASSERT_LT(align_up(x, 64) - x, 64u);
  }
}

TEST(SpinLock, GuardsAMultiWordInvariant) {
  SpinLock lock;
  struct {
    long a = 0, b = 0;
  } pair;
  std::atomic<bool> broken{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 50000; ++i) {
        if (i % 2 == 0) {
          LockGuard g(lock);
          ++pair.a;
          ++pair.b;
        } else {
          while (!lock.try_lock()) {
          }
          if (pair.a != pair.b) broken = true;
          lock.unlock();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_FALSE(broken.load());
  EXPECT_EQ(pair.a, 3 * 25000);
  EXPECT_EQ(pair.b, pair.a);
}

TEST(MpscStack, ConcurrentChainsFromManyProducers) {
  constexpr int kProducers = 3, kChains = 10000, kChainLen = 4;
  static MpscNode nodes[kProducers * kChains * kChainLen];
  MpscStack stack;
  std::atomic<int> finished{0};
  std::vector<unsigned char> seen(sizeof nodes / sizeof nodes[0], 0);
  size_t taken = 0;
  std::thread consumer([&] {
    auto drain = [&] {
      for (MpscNode* n = stack.take_all(); n != nullptr; n = n->next) {
        ++seen[static_cast<size_t>(n - nodes)];
        ++taken;
      }
    };
    while (finished.load() < kProducers) drain();
    drain();
  });
  std::vector<std::thread> ps;
  for (int p = 0; p < kProducers; ++p) {
    ps.emplace_back([&, p] {
      for (int c = 0; c < kChains; ++c) {
        MpscNode* first = &nodes[(p * kChains + c) * kChainLen];
        for (int k = 0; k + 1 < kChainLen; ++k) first[k].next = &first[k + 1];
        stack.push_chain(first, first + kChainLen - 1);
      }
      finished.fetch_add(1);
    });
  }
  for (auto& t : ps) t.join();
  consumer.join();
  EXPECT_EQ(taken, seen.size());
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << i;
  EXPECT_TRUE(stack.empty());
}

TEST(MpscStack, TakeAllIsLifoAndEmptiesTheStack) {
  MpscNode n[5];
  MpscStack s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.take_all(), nullptr);
  for (auto& x : n) s.push(&x);
  EXPECT_FALSE(s.empty());
  MpscNode* got = s.take_all();
  for (int i = 4; i >= 0; --i) {
    ASSERT_EQ(got, &n[i]);
    got = got->next;
  }
  EXPECT_EQ(got, nullptr);
  EXPECT_TRUE(s.empty());
}

TEST(IntrusiveList, AppendMovesEveryNodeInOrder) {
  IntrusiveList<Item> l, m, empty;
  Item a, b, c, d;
  l.push_back(&a);
  m.push_back(&b);
  m.push_back(&c);
  l.append(m);  // a b c
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.tail, nullptr);
  EXPECT_EQ(l.tail, &c);
  EXPECT_EQ(b.prev, &a);
  l.append(empty);  // nothing
  EXPECT_EQ(l.tail, &c);
  m.append(l);  // into an empty list: a b c
  EXPECT_TRUE(l.empty());
  m.push_back(&d);
  std::vector<Item*> order;
  for (Item* i = m.head; i != nullptr; i = i->next) order.push_back(i);
  EXPECT_EQ(order, (std::vector<Item*>{&a, &b, &c, &d}));
  EXPECT_EQ(a.prev, nullptr);
  EXPECT_EQ(d.prev, &c);
  EXPECT_EQ(m.pop_front(), &a);
  m.remove(&d);
  EXPECT_EQ(m.tail, &c);
}

TEST(IntrusiveList, RemoveHeadTailAndOnlyElement) {
  IntrusiveList<Item> l;
  Item a, b, c;
  l.push_front(&a);
  l.push_front(&b);
  l.push_front(&c);  // c b a
  l.remove(&c);      // head
  EXPECT_EQ(l.head, &b);
  EXPECT_EQ(b.prev, nullptr);
  EXPECT_EQ(c.next, nullptr);
  EXPECT_EQ(c.prev, nullptr);
  l.remove(&a);  // tail
  EXPECT_EQ(b.next, nullptr);
  EXPECT_EQ(l.head, &b);
  l.remove(&b);  // only
  EXPECT_TRUE(l.empty());
  // Removed items can go back in, in any order.
  l.push_front(&a);
  l.push_front(&c);
  l.push_front(&b);  // b c a
  std::vector<Item*> order;
  for (Item* i = l.head; i != nullptr; i = i->next) order.push_back(i);
  EXPECT_EQ(order, (std::vector<Item*>{&b, &c, &a}));
  EXPECT_EQ(a.prev, &c);
  EXPECT_EQ(c.prev, &b);
}

TEST(Options, SizeSuffixesAndSpellings) {
  struct Case {
    const char* text;
    long long want;
  } ok[] = {{"0", 0},           {"1k", 1024},          {"1K", 1024},     {"64KB", 64 << 10},
            {"64KiB", 64 << 10}, {"3m", 3ll << 20},    {"3MiB", 3ll << 20}, {"1g", 1ll << 30},
            {"16G", 16ll << 30}, {"4096", 4096},       {"007", 7}};
  for (const Case& c : ok) {
    long long v = -1;
    EXPECT_TRUE(parse_option_value(c.text, OptionType::kSize, &v)) << c.text;
    EXPECT_EQ(v, c.want) << c.text;
  }
  for (const char* bad : {"K", " 5", "5 ", "1.5G", "5T", "5KK", "0x10", "+3", "5KiBs", "12 M"}) {
    long long v = 99;
    EXPECT_FALSE(parse_option_value(bad, OptionType::kSize, &v)) << bad;
    EXPECT_EQ(v, 99) << bad;
  }
}

TEST(Options, MillisTakeNoSuffixAndHugeNumbersAreRejected) {
  long long v = 7;
  EXPECT_TRUE(parse_option_value("250", OptionType::kMillis, &v));
  EXPECT_EQ(v, 250);
  v = 7;
  EXPECT_FALSE(parse_option_value("5K", OptionType::kMillis, &v));
  EXPECT_FALSE(parse_option_value("99999999999999999999999", OptionType::kMillis, &v));
  EXPECT_FALSE(parse_option_value("99999999999999999999999", OptionType::kSize, &v));
  EXPECT_EQ(v, 7);
}

TEST(Options, BoolSpellings) {
  for (const char* t : {"1", "y", "yes", "Y", "true", "TRUE", "t"}) {
    long long v = -1;
    EXPECT_TRUE(parse_option_value(t, OptionType::kBool, &v)) << t;
    EXPECT_EQ(v, 1) << t;
  }
  for (const char* f : {"0", "n", "no", "NO", "false", "F"}) {
    long long v = -1;
    EXPECT_TRUE(parse_option_value(f, OptionType::kBool, &v)) << f;
    EXPECT_EQ(v, 0) << f;
  }
  for (const char* bad : {"", "2", "on", "off", "enable", " 1"}) {
    long long v = -1;
    EXPECT_FALSE(parse_option_value(bad, OptionType::kBool, &v)) << bad;
    EXPECT_EQ(v, -1);
  }
}

// A size whose suffix shift would overflow long long (MPCALLOC_CACHE_MAX=9000000000G) is
// rejected like an over-long number, not wrapped to a negative value.
TEST(Options, SizeOverflowingWithItsSuffixIsRejected) {
  long long v = 5;
  EXPECT_FALSE(parse_option_value("9000000000G", OptionType::kSize, &v)) << "parsed as " << v;
  EXPECT_FALSE(parse_option_value("9007199254740991K", OptionType::kSize, &v)) << "parsed as " << v;
  EXPECT_EQ(v, 5);
}

// A bool is one whole word and a size's unit tail needs a unit ("5iB" is not 5): typos do not
// pass silently (the option keeps its default).
TEST(Options, TrailingGarbageIsRejected) {
  long long v = 5;
  for (const char* bad : {"yesterday", "nope", "1abc", "truthy"}) {
    EXPECT_FALSE(parse_option_value(bad, OptionType::kBool, &v)) << bad;
  }
  EXPECT_FALSE(parse_option_value("5iB", OptionType::kSize, &v));
  EXPECT_EQ(v, 5);
}

TEST(Options, ChoicesAndOutputsParseWholeWords) {
  const OptionDesc& numa = option_desc(kOptNuma);
  long long v = -1;
  EXPECT_TRUE(parse_option(numa, "strict", &v, nullptr));
  EXPECT_EQ(v, kNumaStrict);
  EXPECT_TRUE(parse_option(numa, "INTERLEAVE", &v, nullptr));
  EXPECT_EQ(v, kNumaInterleave);
  for (const char* bad : {"stric", "strictly", "", "auto|off", "1"}) {
    v = 42;
    EXPECT_FALSE(parse_option(numa, bad, &v, nullptr)) << bad;
    EXPECT_EQ(v, 42);
  }
  const OptionDesc& stats = option_desc(kOptStats);
  char path[kOptionPathMax] = "unchanged";
  EXPECT_TRUE(parse_option(stats, "json:/tmp/s.%p.json", &v, path));
  EXPECT_EQ(v, kOutputJson);
  EXPECT_STREQ(path, "/tmp/s.%p.json");
  EXPECT_TRUE(parse_option(stats, "1", &v, path));
  EXPECT_EQ(v, kOutputText);
  EXPECT_STREQ(path, "") << "no file: stderr";
  EXPECT_TRUE(parse_option(stats, "no", &v, path));
  EXPECT_EQ(v, kOutputOff);
  EXPECT_TRUE(parse_option(stats, "text:out.txt", &v, path));
  EXPECT_EQ(v, kOutputText);
  EXPECT_STREQ(path, "out.txt");
  for (const char* bad : {"json:", "xml", "off:f", "1:f", "jsonx"}) {
    EXPECT_FALSE(parse_option(stats, bad, &v, path)) << bad;
  }
  std::string long_path = "json:" + std::string(kOptionPathMax, 'a');
  EXPECT_FALSE(parse_option(stats, long_path.c_str(), &v, path));
}

TEST(Options, LimitsAndSignals) {
  const OptionDesc& limit = option_desc(kOptMemLimit);
  long long v = 7;
  EXPECT_TRUE(parse_option(limit, "auto", &v, nullptr));
  EXPECT_EQ(v, kLimitAuto);
  EXPECT_TRUE(parse_option(limit, "512M", &v, nullptr));
  EXPECT_EQ(v, 512ll << 20);
  EXPECT_TRUE(parse_option(limit, "0", &v, nullptr));
  EXPECT_EQ(v, 0);
  EXPECT_FALSE(parse_option(limit, "automatic", &v, nullptr));
  const OptionDesc& sig = option_desc(kOptStatsSignal);
  EXPECT_TRUE(parse_option(sig, "SIGUSR2", &v, nullptr));
  EXPECT_EQ(v, SIGUSR2);
  EXPECT_TRUE(parse_option(sig, "usr1", &v, nullptr));
  EXPECT_EQ(v, SIGUSR1);
  EXPECT_TRUE(parse_option(sig, "12", &v, nullptr));
  EXPECT_EQ(v, 12);
  EXPECT_TRUE(parse_option(sig, "0", &v, nullptr));
  EXPECT_EQ(v, 0);
  for (const char* bad : {"SIGKILLME", "65", "usr", "SIG", "-1"}) {
    EXPECT_FALSE(parse_option(sig, bad, &v, nullptr)) << bad;
  }
}

TEST(Options, FoundByNameOrVariable) {
  EXPECT_EQ(option_find("cache_max"), kOptCacheMax);
  EXPECT_EQ(option_find("MPCALLOC_CACHE_MAX"), kOptCacheMax);
  EXPECT_EQ(option_find("cache_maxx"), kOptCount);
  EXPECT_EQ(option_find("CACHE_MAX"), kOptCount);
  EXPECT_EQ(option_find(nullptr), kOptCount);
}

TEST(Options, LoadedOnceFromTheEnvironmentWithDefaultsForBadValues) {
  // Each test runs in its own process under ctest; nothing else in this binary loads options.
  setenv("MPCALLOC_DECAY_MS", "1234", 1);
  setenv("MPCALLOC_CACHE_MAX", "64M", 1);
  setenv("MPCALLOC_STATS", "bogus", 1);
  setenv("MPCALLOC_CONF", "decay_ms=99,numa=strict,verbose=maybe", 1);
  unsetenv("MPCALLOC_VERBOSE");
  options_load();
  EXPECT_EQ(option(kOptNuma), kNumaStrict) << "from MPCALLOC_CONF";
  EXPECT_EQ(option(kOptDecayMs), 1234);
  EXPECT_EQ(option(kOptCacheMax), 64ll << 20);
  EXPECT_EQ(option(kOptStats), option_desc(kOptStats).default_value);
  EXPECT_EQ(option(kOptVerbose), option_desc(kOptVerbose).default_value);
  EXPECT_EQ(option(kOptCount), -1);
  setenv("MPCALLOC_DECAY_MS", "1", 1);
  options_load();  // no-op: read once
  EXPECT_EQ(option(kOptDecayMs), 1234);
  unsetenv("MPCALLOC_DECAY_MS");
  unsetenv("MPCALLOC_CACHE_MAX");
  unsetenv("MPCALLOC_STATS");
  unsetenv("MPCALLOC_CONF");
}

TEST(Options, SetAtRunTimeParsesLikeTheEnvironmentAndKeepsTheOldValueOnErrors) {
  options_load();
  long long before = option(kOptDecayMs);
  EXPECT_EQ(option_set("decay_ms", "250"), SetResult::kOk);
  EXPECT_EQ(option(kOptDecayMs), 250);
  EXPECT_EQ(option_set("MPCALLOC_CACHE_MAX", "64M"), SetResult::kOk);
  EXPECT_EQ(option(kOptCacheMax), 64ll << 20);
  EXPECT_EQ(option_set("decay_ms", "soon"), SetResult::kBadValue);
  EXPECT_EQ(option(kOptDecayMs), 250);
  EXPECT_EQ(option_set("decay", "1"), SetResult::kUnknown);
  EXPECT_EQ(option_set("check", "1"), SetResult::kFixed);
  EXPECT_EQ(option(kOptCheck), 0);
  EXPECT_EQ(option_set("decay_ms", std::to_string(before).c_str()), SetResult::kOk);
}

// A stamp's age, on a clock read out of order or stored in 32 bits of a 64-bit clock.
TEST(Clock, AgedCountsStampsAfterNowAsYoungAndSurvivesTheWrap) {
  using mpcalloc::base::aged;
  EXPECT_TRUE(aged<uint64_t>(100, 400, 300));
  EXPECT_FALSE(aged<uint64_t>(100, 399, 300));
  EXPECT_TRUE(aged<uint64_t>(100, 100, 0));
  EXPECT_FALSE(aged<uint64_t>(401, 400, 0)) << "stamped after now: not aged at all";
  EXPECT_FALSE(aged<uint64_t>(401, 400, 300));
  // 32-bit stamps: a tick after now is young; across the wrap, ages still count.
  EXPECT_FALSE(aged<uint32_t>(1004, 1000, 300));
  EXPECT_TRUE(aged<uint32_t>(UINT32_MAX - 99, 200, 300));
  EXPECT_FALSE(aged<uint32_t>(UINT32_MAX - 99, 199, 301));
  // An age longer than half the 32-bit range is never reached.
  EXPECT_FALSE(aged<uint32_t>(0, UINT32_MAX / 2, uint64_t{1} << 40));
}
