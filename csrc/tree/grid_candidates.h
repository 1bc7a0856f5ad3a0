// Candidate edges of the grid's minimum spanning tree, with the heaviest edge of every unit square
// left out.
//
// Edges are named by id: 2*u is the edge from pixel u to its right neighbour, 2*u+1 the edge down.
// Kruskal visits edges in the strict order (weight, id). By the cycle property, the largest edge of
// any cycle in that order is never taken: when it comes, the rest of the cycle has already joined
// its endpoints. So dropping the largest edge of each 4-cycle (unit square) changes nothing in the
// tree or in the order of its merges, and it removes a large share of the edges Kruskal would have
// rejected (about 0.7 N of the N+1 on a random guide) before they cost a sort slot and two finds.
//
// Rows are independent: a band of rows [r0, r1) emits the right and down edges that start in it,
// in id order, so bands can run on different threads and concatenate into id order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/keyed_id.h"

namespace clipapro {

// Squared guide distances of the horizontal edges of row r: d[c] for the edge (r, c) -> (r, c+1).
template <typename T>
void row_right_distances(const T* guide, int64_t f, int64_t n, int64_t w, int64_t r, T* d) {
  std::fill(d, d + w - 1, T(0));
  for (int64_t k = 0; k < f; ++k) {
    const T* row = guide + k * n + r * w;
    for (int64_t c = 0; c + 1 < w; ++c) {
      const T e = row[c + 1] - row[c];
      d[c] += e * e;
    }
  }
}

// Squared guide distances of the vertical edges from row r: d[c] for the edge (r, c) -> (r+1, c).
template <typename T>
void row_down_distances(const T* guide, int64_t f, int64_t n, int64_t w, int64_t r, T* d) {
  std::fill(d, d + w, T(0));
  for (int64_t k = 0; k < f; ++k) {
    const T* row = guide + k * n + r * w;
    for (int64_t c = 0; c < w; ++c) {
      const T e = row[c + w] - row[c];
      d[c] += e * e;
    }
  }
}

// Sort items for the edges of a row, ready to compare in (weight, id) order.
template <typename T>
void row_items(const T* d, int64_t count, uint32_t first_id, KeyedId<T>* out) {
  for (int64_t c = 0; c < count; ++c) out[c] = KeyedId<T>::make(d[c], first_id + 2 * static_cast<uint32_t>(c));
}

// Emits the candidate edges of rows [r0, r1) of an (h, w) grid with planar guide (f, h*w), in id
// order, appending to `out` (which grows by at most 2 (r1 - r0) w items).
template <typename T>
void grid_candidates(const T* guide, int64_t h, int64_t w, int64_t f, int64_t r0, int64_t r1,
                     Buffer<KeyedId<T>>& out) {
  using Item = KeyedId<T>;
  if (r0 >= r1) return;
  const int64_t n = h * w;
  // Rolling rows: right edges of rows r and r+1, down edges of row r, and the square maxima of
  // rows r-1 and r, padded so that square c sits at index c+1 and the missing squares left of
  // column 0, right of column w-2, above row 0 and below row h-2 hold Item::none() (equal to no
  // edge): every drop test is then the same two comparisons, with no branch.
  std::vector<T> dist(w);
  std::vector<Item> right_cur(w), right_next(w), down(w), max_prev(w + 1, Item::none()), max_cur(w + 1, Item::none());
  auto right_row = [&](int64_t r, std::vector<Item>& dst) {
    row_right_distances(guide, f, n, w, r, dist.data());
    row_items(dist.data(), w - 1, static_cast<uint32_t>(2 * r * w), dst.data());
  };
  auto down_row = [&](int64_t r, std::vector<Item>& dst) {
    row_down_distances(guide, f, n, w, r, dist.data());
    row_items(dist.data(), w, static_cast<uint32_t>(2 * r * w + 1), dst.data());
  };
  // Square (r, c) has the edges right(r, c), right(r+1, c), down(r, c), down(r, c+1).
  auto square_max = [&](const std::vector<Item>& top, const std::vector<Item>& bottom, const std::vector<Item>& dn,
                        std::vector<Item>& dst) {
    for (int64_t c = 0; c + 1 < w; ++c) {
      dst[c + 1] = Item::larger(Item::larger(top[c], bottom[c]), Item::larger(dn[c], dn[c + 1]));
    }
  };
  const size_t base = out.size();
  out.resize(base + static_cast<size_t>(2 * (r1 - r0) * w));
  Item* dst = out.data() + base;
  int64_t kept = 0;
  if (w > 1) right_row(r0, right_cur);
  if (r0 > 0 && w > 1) {  // the square row above the band: its maxima may drop this band's first edges
    std::vector<Item> right_above(w), down_above(w);
    right_row(r0 - 1, right_above);
    down_row(r0 - 1, down_above);
    square_max(right_above, right_cur, down_above, max_prev);
  }
  for (int64_t r = r0; r < r1; ++r) {
    if (r + 1 < h) {
      down_row(r, down);
      if (w > 1) {
        right_row(r + 1, right_next);
        square_max(right_cur, right_next, down, max_cur);
      }
    }
    const Item* mp = max_prev.data();
    const Item* mc = max_cur.data();
    if (r + 1 < h) {
      for (int64_t c = 0; c + 1 < w; ++c) {
        const Item e = right_cur[c];
        dst[kept] = e;
        kept += !(e.same(mp[c + 1]) | e.same(mc[c + 1]));
        const Item d = down[c];
        dst[kept] = d;
        kept += !(d.same(mc[c]) | d.same(mc[c + 1]));
      }
      const Item d = down[w - 1];  // the last column has a down edge only
      dst[kept] = d;
      kept += !(d.same(mc[w - 1]) | d.same(mc[w]));
    } else {  // the last row has right edges only
      for (int64_t c = 0; c + 1 < w; ++c) {
        const Item e = right_cur[c];
        dst[kept] = e;
        kept += !e.same(mp[c + 1]);
      }
    }
    std::swap(right_cur, right_next);
    std::swap(max_prev, max_cur);
  }
  out.resize(base + static_cast<size_t>(kept));
}

}  // namespace clipapro
