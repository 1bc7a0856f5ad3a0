// Tree builds: the Kruskal reconstruction tree of the 4-connected grid (or of a given spanning tree)
// weighted by squared guide distances.
//
// Large images, and any image worth two threads, are cut into bands of rows. Each band's candidate
// edges are gathered, sorted and run through Kruskal independently of the other bands (on as many
// threads as there are); then one pass joins the band trees along the seams (seam_merge.h). The
// result is the same tree, merge for merge, as one Kruskal over the whole grid in (weight, id)
// order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/bucket_sort.h"
#include "common/keyed_id.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "tree/grid_candidates.h"
#include "tree/kruskal.h"
#include "tree/seam_merge.h"

namespace clipapro {

// Endpoints of grid edge ids: 2u is u -> u+1, 2u+1 is u -> u+w.
struct GridEndpoints {
  int64_t w;
  void operator()(uint32_t id, int64_t* u, int64_t* v) const {
    *u = id >> 1;
    *v = *u + ((id & 1u) ? w : 1);
  }
};

// Endpoints of a given edge list (n-1, 2): id e is the edge edges[e].
struct ListEndpoints {
  const int64_t* edges;
  void operator()(uint32_t e, int64_t* u, int64_t* v) const {
    *u = edges[2 * e];
    *v = edges[2 * e + 1];
  }
};

// Bands of rows for a tree build: at most about kBandPixels pixels each (a band's union-find, 2 MB,
// then stays in the L2 cache; smaller bands would put more merges next to a seam, which the serial
// join replays: measured at 2048^2 and 4096^2, 2^19 beat 2^18 and 2^20), at least two with two
// threads on an image big enough to repay starting a thread, and at least two rows each. One band
// means one piece.
struct BuildOptions {
  int threads = 1;
  int64_t band_pixels = 0;  // > 0: bands of at most this many pixels (tests use it to get many bands)
};

inline BandLayout band_layout(int64_t h, int64_t w, const BuildOptions& opt) {
  constexpr int64_t kBandPixels = int64_t(1) << 19, kMinSplit = int64_t(1) << 14;
  const int64_t n = h * w, most = opt.band_pixels > 0 ? opt.band_pixels : kBandPixels;
  int64_t bands = (n + most - 1) / most;
  if (opt.threads >= 2 && n >= kMinSplit) bands = std::max<int64_t>(bands, 2);
  bands = std::max<int64_t>(1, std::min(bands, h / 2));
  BandLayout lay{n, w, {}};
  for (int64_t b = 0; b <= bands; ++b) lay.start.push_back(h * b / bands * w);
  return lay;
}

// Builds a tree in one piece: sorts the items (in id order) and runs Kruskal on them.
template <typename T, typename Endpoints>
void one_piece_tree(int64_t n, Buffer<KeyedId<T>>& items, Endpoints ends, bool require_tree, MergeTree<T>& tree) {
  Scratch<KeyedId<T>> tmp;
  bucket_sort(items, tmp);
  tree.n = n;
  tree.bands.resize(n - 1);
  const int64_t m = band_kruskal(items.data(), static_cast<int64_t>(items.size()), ends, require_tree, 0, n, n,
                                 tree.bands.child.data(), tree.bands.merges.data());
  if (m != n - 1) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
  tree.run_end.assign(1, n - 1);
}

// Builds a tree in bands: `band_work(b, items, seam)` fills band b's candidate items in id order
// and the edges from its last row to the next band (seam), on a worker thread, which then sorts
// the items, runs Kruskal and marks the merges that touch a seam; one pass then replays those and
// the seam edges (seam_merge.h).
template <typename T, typename Endpoints, typename BandWork>
void band_tree(const BandLayout& lay, int threads, Endpoints ends, bool require_tree, BandWork band_work,
               MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int bands = lay.bands();
  tree.n = lay.n;
  tree.bands.resize(lay.n - bands);  // room for (pixels - 1) merges per band
  tree.dead.assign(static_cast<size_t>(lay.n - bands), 0);
  tree.run_end.clear();
  for (int b = 0; b < bands; ++b) tree.run_end.push_back(lay.end_slot(b));
  std::vector<Scratch<TaggedMerge<T>>> tagged(static_cast<size_t>(bands));
  std::vector<Scratch<Item>> seams(static_cast<size_t>(bands));
  std::vector<int64_t> merges(static_cast<size_t>(bands));
  Scratch<int32_t> rank(static_cast<size_t>(lay.n - bands));
  parallel_for(bands, threads, [&](int64_t b) {
    Scratch<Item> items, tmp;
    band_work(static_cast<int>(b), items, seams[b]);
    bucket_sort(items.vec(), tmp);
    const int64_t first = lay.first_slot(static_cast<int>(b));
    merges[b] = band_kruskal(items.data(), static_cast<int64_t>(items.size()), ends, require_tree, lay.start[b],
                             lay.start[b + 1], lay.n + first, tree.bands.child.data() + 2 * first,
                             tree.bands.merges.data() + first);
    split_band(lay, static_cast<int>(b), merges[b], tree, rank.data(), tagged[b]);
    bucket_sort(seams[b].vec(), tmp);
  });
  join_bands(lay, merges, tagged, seams, ends, require_tree, tree);
}

// Reconstruction tree of the grid (see MergeTree for how its merges are laid out).
template <typename T>
void grid_merge_tree(const T* guide, int64_t h, int64_t w, int64_t f, const BuildOptions& opt, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = h * w;
  const GridEndpoints ends{w};
  const BandLayout lay = band_layout(h, w, opt);
  if (lay.bands() == 1) {
    Scratch<Item> items;
    items.reserve(static_cast<size_t>(2 * n));
    grid_candidates(guide, h, w, f, 0, h, items.vec());
    one_piece_tree(n, items.vec(), ends, false, tree);
    return;
  }
  band_tree<T>(lay, opt.threads, ends, false, [&](int b, Scratch<Item>& items, Scratch<Item>& seam) {
    const int64_t r0 = lay.start[b] / w, r1 = lay.start[b + 1] / w;
    items.reserve(static_cast<size_t>(2 * (r1 - r0) * w));
    Buffer<Item>& it = items.vec();
    grid_candidates(guide, h, w, f, r0, r1, it);
    if (r1 < h) {  // the down edges of the band's last row cross the seam: set them aside
      const uint32_t first = static_cast<uint32_t>(2 * (r1 - 1) * w);
      auto tail = std::find_if(it.begin(), it.end(), [first](const Item& e) { return e.id() >= first; });
      auto keep = std::stable_partition(tail, it.end(), [](const Item& e) { return (e.id() & 1u) == 0; });
      seam.reserve(static_cast<size_t>(w));
      seam.vec().assign(keep, it.end());
      it.erase(keep, it.end());
    }
  }, tree);
}

// Checks a given tree edge (u, v) of an (h, w) grid; returns an error message or "".
inline std::string given_edge_error(int64_t u, int64_t v, int64_t w, int64_t n) {
  if (u < 0 || v < 0 || u >= n || v >= n) {
    return "tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) + ") with a pixel index outside [0, " +
           std::to_string(n) + ")";
  }
  const int64_t lo = std::min(u, v), hi = std::max(u, v);
  const bool horizontal = (hi - lo == 1) && (lo / w == hi / w);
  if (!horizontal && hi - lo != w) {
    return "tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) +
           ") between pixels that are not 4-neighbours in the grid";
  }
  return std::string();
}

// Reconstruction tree of a given spanning tree (edges (n-1, 2)); ties are broken by edge index.
// Raises std::invalid_argument naming "tree" when the edges are not a spanning tree of the grid.
template <typename T>
void given_merge_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges,
                      const BuildOptions& opt, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = h * w, m = n - 1;
  const ListEndpoints ends{edges};
  const BandLayout lay = band_layout(h, w, opt);
  const int bands = lay.bands();
  std::vector<int32_t> band_of_row(static_cast<size_t>(h));
  for (int b = 0; b < bands; ++b) {
    for (int64_t r = lay.start[b] / w; r < lay.start[b + 1] / w; ++r) band_of_row[r] = b;
  }
  // Pass 1, over edge ranges: check every edge, weigh it and file it under its band (list 2b) or,
  // when it crosses from band b to band b + 1, under that seam (list 2b + 1).
  const int parts = std::max(1, std::min(opt.threads, 8));
  std::vector<Scratch<Item>> lists(static_cast<size_t>(parts) * 2 * bands);
  std::vector<std::string> errors(parts);
  parallel_for(parts, parts, [&](int64_t p) {
    const int64_t e0 = m * p / parts, e1 = m * (p + 1) / parts;
    Scratch<Item>* mine = &lists[p * 2 * bands];
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t u = edges[2 * e], v = edges[2 * e + 1];
      std::string err = given_edge_error(u, v, w, n);
      if (!err.empty()) {
        errors[p] = std::move(err);
        return;
      }
      const int bu = band_of_row[u / w], bv = band_of_row[v / w];
      mine[bu == bv ? 2 * bu : 2 * std::min(bu, bv) + 1].vec().push_back(
          Item::make(squared_distance(guide, f, n, u, v), static_cast<uint32_t>(e)));
    }
  });
  for (const std::string& err : errors) {
    if (!err.empty()) throw std::invalid_argument(err);
  }
  auto gather = [&](int list, Scratch<Item>& dst) {  // parts in order: id order
    size_t total = 0;
    for (int p = 0; p < parts; ++p) total += lists[p * 2 * bands + list].size();
    dst.reserve(total);
    for (int p = 0; p < parts; ++p) {
      const Buffer<Item>& src = lists[p * 2 * bands + list].vec();
      dst.vec().insert(dst.vec().end(), src.begin(), src.end());
    }
  };
  if (bands == 1) {
    Scratch<Item> items;
    gather(0, items);
    one_piece_tree(n, items.vec(), ends, true, tree);
    return;
  }
  band_tree<T>(lay, opt.threads, ends, true, [&](int b, Scratch<Item>& items, Scratch<Item>& seam) {
    gather(2 * b, items);
    gather(2 * b + 1, seam);
  }, tree);
}

// Writes a reconstruction tree into `out`: breadth-first parent links and heights, and the MST
// edges and weights when asked.
template <typename T, typename Endpoints>
void write_tree(const MergeTree<T>& tree, Endpoints ends, const TreeBuffers<T>& out, int threads) {
  write_tree_edges(tree, ends, out);
  renumber_breadth_first(tree, out, threads);
}

template <typename T>
void build_grid_tree(const T* guide, int64_t h, int64_t w, int64_t f, const TreeBuffers<T>& out,
                     const BuildOptions& opt) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  MergeTree<T> tree;
  grid_merge_tree(guide, h, w, f, opt, tree);
  write_tree(tree, GridEndpoints{w}, out, opt.threads);
}

template <typename T>
void build_given_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges,
                      const TreeBuffers<T>& out, const BuildOptions& opt) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  MergeTree<T> tree;
  given_merge_tree(guide, h, w, f, edges, opt, tree);
  write_tree(tree, ListEndpoints{edges}, out, opt.threads);
}

}  // namespace clipapro
