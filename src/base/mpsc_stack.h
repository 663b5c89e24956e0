// Lock-free multi-producer / single-consumer stack of intrusive nodes. Layer base.
// Producers push one node (or a pre-linked chain) with a CAS; the single consumer takes the
// whole stack at once with an exchange, so there is no ABA problem.
#pragma once
#include <atomic>

namespace mpcalloc::base {

struct MpscNode {
  MpscNode* next;
};

class MpscStack {
 public:
  constexpr MpscStack() = default;
  // Pushes the chain first..last (last->next is overwritten).
  void push_chain(MpscNode* first, MpscNode* last) {
    MpscNode* head = head_.load(std::memory_order_relaxed);
    do {
      last->next = head;
    } while (!head_.compare_exchange_weak(head, first, std::memory_order_release,
                                          std::memory_order_relaxed));
  }
  void push(MpscNode* n) { push_chain(n, n); }
  // Consumer only: takes everything pushed so far.
  MpscNode* take_all() {
    if (head_.load(std::memory_order_relaxed) == nullptr) return nullptr;
    return head_.exchange(nullptr, std::memory_order_acquire);
  }
  bool empty() const { return head_.load(std::memory_order_relaxed) == nullptr; }

 private:
  std::atomic<MpscNode*> head_{nullptr};
};

}  // namespace mpcalloc::base
