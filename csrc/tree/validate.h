// Checks of a prebuilt reconstruction tree (a KruskalTree from Python) before a sweep trusts it.
//
// The sweeps index their scratch by parent links, so a link out of range writes out of bounds and a
// link that breaks the numbering (parents before children) silently sums the wrong subtrees. One
// O(n) pass checks what the sweeps rely on: the root is node n with parent -1; every pixel's
// parent is an internal node; every other internal node's parent has a smaller number (so there is
// no cycle and every node reaches the root); no node has more than two children (with 2n-2 links
// into n-1 internal nodes, every one then has exactly two); heights are finite, >= 0, and a node
// is never lower than its children.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "common/scratch.h"

namespace clipapro {

namespace detail {

// Walks the tree node by node and describes the first fault ("" when there is none).
template <typename T>
std::string sweep_tree_message(int64_t n, const int32_t* parent, const T* height) {
  auto link = [&](int64_t v) { return "parent[" + std::to_string(v) + "] = " + std::to_string(parent[v]); };
  if (n == 1) return parent[0] == -1 ? std::string() : link(0) + ": a one-pixel tree's only node is its root (-1)";
  if (parent[n] != -1) return link(n) + ": the root (node N = " + std::to_string(n) + ") must have parent -1";
  Scratch<uint8_t> kids(static_cast<size_t>(n - 1), uint8_t(0));
  const int64_t last = 2 * n - 1;
  for (int64_t v = 0; v < n; ++v) {
    const int64_t p = parent[v];
    if (p < n || p >= last) {
      return link(v) + ": a pixel's parent must be an internal node in [" + std::to_string(n) + ", " +
             std::to_string(last) + ")";
    }
    if (++kids[p - n] > 2) return link(v) + ": node " + std::to_string(p) + " has more than two children";
  }
  const T top = std::numeric_limits<T>::max();
  for (int64_t j = 0; j < n - 1; ++j) {
    const T h = height[j];
    if (!(h >= T(0) && h <= top)) {
      return "height[" + std::to_string(j) + "] = " + std::to_string(h) + ": heights must be finite and >= 0";
    }
    if (j == 0) continue;
    const int64_t v = n + j, p = parent[v];
    if (p < n || p >= v) {
      return link(v) + ": an internal node's parent must come before it, in [" + std::to_string(n) + ", " +
             std::to_string(v) + ")";
    }
    if (++kids[p - n] > 2) return link(v) + ": node " + std::to_string(p) + " has more than two children";
    if (height[p - n] < h) {
      return "height[" + std::to_string(j) + "] = " + std::to_string(h) + " is above its parent's height[" +
             std::to_string(p - n) + "] = " + std::to_string(height[p - n]) + ": a node is never lower than its children";
    }
  }
  return std::string();
}

// The same checks as sweep_tree_error, as branch-free passes that vectorise (ranges first, so that
// the counting pass indexes only valid slots): about 1.5 ns a pixel. Child counts are bytes that
// may wrap: all of them reading exactly 2 still proves every count is 2, since the 2n-2 links are
// spread over n-1 nodes and a count that wrapped to 2 (258, ...) would leave another node below 2.
template <typename T>
bool sweep_tree_ok(int64_t n, const int32_t* parent, const T* height) {
  if (n == 1) return parent[0] == -1;
  if (parent[n] != -1) return false;
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr U kSign = U(1) << (sizeof(U) * 8 - 1);
  constexpr U kInf = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  const int32_t lo = static_cast<int32_t>(n), last = static_cast<int32_t>(2 * n - 1);
  uint32_t bad = 0;
  for (int64_t v = 0; v < n; ++v) bad |= static_cast<uint32_t>(parent[v] < lo) | static_cast<uint32_t>(parent[v] >= last);
  for (int64_t v = n + 1; v < 2 * n - 1; ++v) {
    bad |= static_cast<uint32_t>(parent[v] < lo) | static_cast<uint32_t>(parent[v] >= static_cast<int32_t>(v));
  }
  for (int64_t j = 0; j < n - 1; ++j) {
    U u;  // finite and >= 0 (-0 too): sign clear and exponent not all ones
    std::memcpy(&u, height + j, sizeof u);
    bad |= static_cast<uint32_t>(u >= kInf) & static_cast<uint32_t>(u != kSign);
  }
  if (bad) return false;
  Scratch<uint8_t> kids(static_cast<size_t>(n - 1), uint8_t(0));  // by internal index (node - n)
  uint8_t* k = kids.data();
  for (int64_t v = 0; v < n; ++v) ++k[parent[v] - lo];
  for (int64_t v = n + 1; v < 2 * n - 1; ++v) {
    ++k[parent[v] - lo];
    bad |= static_cast<uint32_t>(height[parent[v] - lo] < height[v - n]);
  }
  for (int64_t u = 0; u < n - 1; ++u) bad |= static_cast<uint32_t>(k[u] != 2);
  return !bad;
}

}  // namespace detail

// An error message ("" when the tree is sound) for parent (2n-1) and height (n-1).
template <typename T>
std::string sweep_tree_error(int64_t n, const int32_t* parent, const T* height) {
  if (detail::sweep_tree_ok(n, parent, height)) return std::string();
  std::string err = detail::sweep_tree_message(n, parent, height);
  return err.empty() ? "the tree breaks the layout the sweeps need" : err;  // the two agree; never trust one
}

}  // namespace clipapro
