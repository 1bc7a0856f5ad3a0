// Merging sorted sources in (weight, id) order: a binary min-heap of the sources' current heads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace clipapro {

template <typename Item>
class KWayMerge {
 public:
  explicit KWayMerge(size_t sources) { heap_.reserve(sources); }
  void add(const Item& head, int source) {
    heap_.push_back({head, source});
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  bool empty() const { return heap_.empty(); }
  const Item& top() const { return heap_.front().item; }
  int top_source() const { return heap_.front().source; }
  // The top source's next head takes its place (one sift down, instead of a pop and a push).
  void replace_top(const Item& head) {
    const size_t n = heap_.size();
    const Head moving{head, heap_[0].source};
    size_t i = 0;
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && Item::before(heap_[c + 1].item, heap_[c].item)) ++c;
      if (!Item::before(heap_[c].item, moving.item)) break;
      heap_[i] = heap_[c];
      i = c;
    }
    heap_[i] = moving;
  }
  // The top source is spent.
  void pop() {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
  }

 private:
  struct Head {
    Item item;
    int source;
  };
  static bool later(const Head& a, const Head& b) { return Item::before(b.item, a.item); }  // a min-heap
  std::vector<Head> heap_;
};

}  // namespace clipapro
