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
  // Moves every node of `other` to the back of this list, in order; `other` is left empty.
  void append(IntrusiveList& other) {
    if (other.head == nullptr) return;
    if (tail != nullptr) tail->next = other.head;
    else head = other.head;
    other.head->prev = tail;
    tail = other.tail;
    other.head = other.tail = nullptr;
  }
  T* pop_front() {
    T* n = head;
    if (n != nullptr) remove(n);
    return n;
  }
};

}  // namespace mpcalloc::base
