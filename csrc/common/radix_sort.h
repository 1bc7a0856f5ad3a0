// Stable LSD radix sort of (float key, uint32 payload) pairs; keys may be float or double.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace clipapro {

// Order-preserving map from an IEEE float to an unsigned integer (negative values included).
inline uint32_t float_key(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline uint64_t float_key(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

// Sorts `idx` (initially any payload) by `keys[k]` ascending, stably; keys are left untouched.
// `keys` is given per element (keys[k] belongs to idx[k]). Passes whose digit is constant are skipped.
template <typename T>
void radix_sort_by_key(std::vector<T>& keys_in, std::vector<uint32_t>& idx) {
  using K = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
  constexpr int kBits = 11;
  constexpr int kBuckets = 1 << kBits;
  constexpr int kPasses = (8 * sizeof(K) + kBits - 1) / kBits;
  const size_t n = idx.size();
  std::vector<K> key(n), key2(n);
  std::vector<uint32_t> idx2(n);
  std::vector<uint32_t> hist(static_cast<size_t>(kPasses) * kBuckets, 0);
  for (size_t i = 0; i < n; ++i) {
    const K k = float_key(keys_in[i]);
    key[i] = k;
    for (int p = 0; p < kPasses; ++p) ++hist[p * kBuckets + ((k >> (p * kBits)) & (kBuckets - 1))];
  }
  for (int p = 0; p < kPasses; ++p) {
    uint32_t* h = &hist[static_cast<size_t>(p) * kBuckets];
    bool trivial = false;
    for (int b = 0; b < kBuckets; ++b) {
      if (h[b] == n) { trivial = true; break; }
      if (h[b]) break;
    }
    if (trivial) continue;
    uint32_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) { const uint32_t c = h[b]; h[b] = sum; sum += c; }
    const int shift = p * kBits;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t pos = h[(key[i] >> shift) & (kBuckets - 1)]++;
      key2[pos] = key[i];
      idx2[pos] = idx[i];
    }
    key.swap(key2);
    idx.swap(idx2);
  }
}

}  // namespace clipapro
