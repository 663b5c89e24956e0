// Intrusive doubly-linked list for slow-path bookkeeping (runs, segments). Layer base.
// T must have `T* next; T* prev;` members.
#pragma once

namespace mpcalloc::base {

template <typename T>
struct IntrusiveList {
  T* head = nullptr;
  constexpr IntrusiveList() = default;

  bool empty() const { return head == nullptr; }
  void push_front(T* n) {
    n->prev = nullptr;
    n->next = head;
    if (head != nullptr) head->prev = n;
    head = n;
  }
  void remove(T* n) {
    if (n->prev != nullptr) n->prev->next = n->next;
    else head = n->next;
    if (n->next != nullptr) n->next->prev = n->prev;
    n->next = n->prev = nullptr;
  }
  T* pop_front() {
    T* n = head;
    if (n != nullptr) remove(n);
    return n;
  }
};

}  // namespace mpcalloc::base
