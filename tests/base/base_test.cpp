// Layer base: size classes, bit helpers, spinlock, MPSC stack, intrusive list, options.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "base/bits.h"
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
      ASSERT_LE(s * 4, n * 5 + 4) << "waste above 25% at " << n;
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
