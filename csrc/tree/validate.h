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
#include <limits>
#include <string>

#include "common/scratch.h"

namespace clipapro {

// An error message ("" when the tree is sound) for parent (2n-1) and height (n-1).
template <typename T>
std::string sweep_tree_error(int64_t n, const int32_t* parent, const T* height) {
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

}  // namespace clipapro
