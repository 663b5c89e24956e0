// Intrusive doubly-linked list for slow-path bookkeeping (runs, segments). Layer base.
// T must have `T* next; T* prev;` members.
#pragma once

namespace mpcalloc::base {

template <typename T>
struct IntrusiveList {
  T* head = nullptr;
  T* tail = nullptr;
  constexpr IntrusiveList() = default;

  bool empty() const { return head == nullptr; }
  void push_front(T* n) {
    n->prev = nullptr;
    n->next = head;
    if (head != nullptr) head->prev = n;
    else tail = n;
    head = n;
  }
  void push_back(T* n) {
    n->next = nullptr;
    n->prev = tail;
    if (tail != nullptr) tail->next = n;
    else head = n;
    tail = n;
  }
  void remove(T* n) {
    if (n->prev != nullptr) n->prev->next = n->next;
    else head = n->next;
    if (n->next != nullptr) n->next->prev = n->prev;
    else tail = n->prev;
    n->next = n->prev = nullptr;
  }
  T* pop_front() {
    T* n = head;
    if (n != nullptr) remove(n);
    return n;
  }
};

}  // namespace mpcalloc::base
