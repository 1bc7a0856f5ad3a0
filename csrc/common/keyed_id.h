// Sortable (weight, id) items: an edge's weight mapped to an unsigned key whose integer order is the
// float order (negatives included), and the edge's id. A float key and its id pack into one uint64
// (key in the high half), so comparing items compares (weight, id) and a radix pass moves 8 bytes
// per item; a double key travels with its id in a 16-byte item.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/scratch.h"

namespace clipapro {

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
inline float key_to_float(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
inline double key_to_float(uint64_t k) {
  const uint64_t u = (k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k;
  double v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// A sortable (key, id) item: float keys pack into one uint64, double keys use two words.
template <typename T>
struct KeyedId;

template <>
struct KeyedId<float> {
  using Key = uint32_t;
  uint64_t packed;
  static KeyedId make(float w, uint32_t id) { return {(uint64_t(float_key(w)) << 32) | id}; }
  Key key() const { return static_cast<uint32_t>(packed >> 32); }
  uint32_t id() const { return static_cast<uint32_t>(packed); }
  bool same(const KeyedId& o) const { return packed == o.packed; }
  static KeyedId none() { return {0}; }  // compares unequal to every item (keys of weights >= 0 are not 0)
  static KeyedId last() { return {~uint64_t(0)}; }  // after every item of a finite weight
  static bool before(const KeyedId& a, const KeyedId& b) { return a.packed < b.packed; }
  static KeyedId larger(const KeyedId& a, const KeyedId& b) { return before(a, b) ? b : a; }
  float weight() const { return key_to_float(static_cast<uint32_t>(packed >> 32)); }
};

template <>
struct KeyedId<double> {
  using Key = uint64_t;
  uint64_t key_;
  uint32_t id_;
  static KeyedId make(double w, uint32_t id) { return {float_key(w), id}; }
  Key key() const { return key_; }
  uint32_t id() const { return id_; }
  bool same(const KeyedId& o) const { return key_ == o.key_ && id_ == o.id_; }
  static KeyedId none() { return {0, 0}; }
  static KeyedId last() { return {~uint64_t(0), ~uint32_t(0)}; }
  static bool before(const KeyedId& a, const KeyedId& b) { return a.key_ < b.key_ || (a.key_ == b.key_ && a.id_ < b.id_); }
  static KeyedId larger(const KeyedId& a, const KeyedId& b) { return before(a, b) ? b : a; }
  double weight() const { return key_to_float(key_); }
};

}  // namespace clipapro
