// Sort of (key, id) items in (key, id) order, for items given in id order.
//
// One MSD pass on the top 11 bits of (key - min key) scatters the items into 2048 buckets, keeping
// their order within each; each bucket, small enough to stay in the L1/L2 cache, is then sorted on
// its remaining key bits by a stable LSD radix sort (insertion sort when tiny). Stability keeps
// equal keys in id order. Float keys need 3 passes where a plain LSD sort would take 4, and the
// later passes run in cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/keyed_id.h"

namespace clipapro {

namespace detail {

// Stable LSD sort of a bucket on bits [0, bits) of (key - lo); tmp is scratch.
template <typename T>
void sort_bucket(KeyedId<T>* a, int64_t len, typename KeyedId<T>::Key lo, int bits, Buffer<KeyedId<T>>& tmp) {
  using Item = KeyedId<T>;
  using Key = typename Item::Key;
  if (len < 2 || bits == 0) return;
  if (len <= 32) {  // all keys in a bucket are >= lo, so comparing keys compares (key - lo)
    for (int64_t i = 1; i < len; ++i) {
      const Item v = a[i];
      const Key kv = v.key();
      int64_t j = i;
      for (; j > 0 && a[j - 1].key() > kv; --j) a[j] = a[j - 1];
      a[j] = v;
    }
    return;
  }
  constexpr int kDigit = 8;
  const int passes = (bits + kDigit - 1) / kDigit;
  uint32_t hist[8][1 << kDigit];
  std::memset(hist, 0, sizeof(hist[0]) * static_cast<size_t>(passes));  // only the passes in use
  for (int64_t i = 0; i < len; ++i) {
    const Key k = a[i].key() - lo;
    for (int p = 0; p < passes; ++p) ++hist[p][(k >> (kDigit * p)) & 0xff];
  }
  tmp.resize(static_cast<size_t>(len));
  Item* src = a;
  Item* dst = tmp.data();
  for (int p = 0; p < passes; ++p) {
    uint32_t* h = hist[p];
    bool constant = false;
    for (int d = 0; d < (1 << kDigit); ++d) {
      if (h[d] == static_cast<uint32_t>(len)) constant = true;
      if (h[d]) break;
    }
    if (constant) continue;
    uint32_t sum = 0;
    for (int d = 0; d < (1 << kDigit); ++d) {
      const uint32_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    const int sh = kDigit * p;
    for (int64_t i = 0; i < len; ++i) dst[h[((src[i].key() - lo) >> sh) & 0xff]++] = src[i];
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + len, a);
}

}  // namespace detail

// Sorts items (given in id order) by (key, id), using `scratch` (both may be resized).
template <typename T>
void bucket_sort(Buffer<KeyedId<T>>& items, Scratch<KeyedId<T>>& scratch) {
  using Item = KeyedId<T>;
  using Key = typename Item::Key;
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  const int64_t n = static_cast<int64_t>(items.size());
  if (n < 2) return;
  Key lo = ~Key(0), hi = 0;
  for (const Item& it : items) {
    lo = std::min(lo, it.key());
    hi = std::max(hi, it.key());
  }
  const uint64_t span = static_cast<uint64_t>(hi - lo);
  const int bits = span ? 64 - __builtin_clzll(span) : 0;
  if (bits == 0) return;  // one key: id order is the order
  const int shift = std::max(0, bits - kBits);
  std::vector<int64_t> start(kBuckets + 1, 0);
  for (const Item& it : items) ++start[((it.key() - lo) >> shift) + 1];
  for (int b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  scratch.resize(static_cast<size_t>(n));
  Buffer<Item>& tmp = scratch.vec();
  for (const Item& it : items) tmp[next[(it.key() - lo) >> shift]++] = it;
  items.swap(tmp);
  for (int b = 0; b < kBuckets; ++b) {
    detail::sort_bucket(items.data() + start[b], start[b + 1] - start[b], lo, shift, tmp);
  }
}

}  // namespace clipapro
