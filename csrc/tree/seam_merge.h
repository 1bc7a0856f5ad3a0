// Joins the reconstruction trees of bands of pixel rows, built independently (on several threads,
// each band small enough for its union-find to stay in cache), into the tree of the whole grid.
//
// Each band ran Kruskal on the edges inside it; the seam edges between the last row of a band and
// the first row of the next were kept aside. Every edge of the grid's MST is in one of these lists:
// an MST edge inside a band is never the largest edge of a cycle, so the band's own Kruskal took
// it. Kruskal on the union of all the sorted lists in (weight, id) order therefore makes exactly
// the merges of one Kruskal over the whole grid.
//
// Most of that union needs no work. A band merge whose subtree holds no seam pixel ("untagged")
// can neither be refused nor see its children change: it stays where it is, as it is. Only the
// tagged band merges (13-17% of all merges on noise with bands of 256 to 128 rows) and the seam
// edges are replayed, in (weight, id) order, with a union-find over the seam pixels that follows
// which seam-touching components were joined across seams. Replayed merges go to the glue slots of
// the MergeTree, and their band slots are marked dead.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "common/keyed_id.h"
#include "common/kway_merge.h"
#include "common/scratch.h"
#include "tree/kruskal.h"

namespace clipapro {

// Where the pieces sit: band b holds the pixels [start[b], start[b+1]) (whole rows of width w, at
// least two), and its merges the band slots from start[b] - b on. Seam s joins band s and band
// s + 1; its seam pixels are the last row of band s and the first row of band s + 1, numbered
// 2 w s, 2 w s + 1, ... in pixel order.
struct BandLayout {
  int64_t n, w;
  std::vector<int64_t> start;  // size bands + 1
  int bands() const { return static_cast<int>(start.size()) - 1; }
  int64_t first_slot(int b) const { return start[b] - b; }
  int64_t end_slot(int b) const { return start[b + 1] - b - 1; }
  // Seam index of pixel p of band b, which must be in its first row (b > 0) or last row (b < last).
  int32_t seam_index(int b, int64_t p) const {
    const int s = p < start[b] + w ? b - 1 : b;
    return static_cast<int32_t>(2 * w * s + (p - (start[s + 1] - w)));
  }
};

// A tagged merge as the replay reads it: its edge, and each child as a node id (>= 0: a pixel off
// the seams or an untagged merge, which stay as they are) or as -(ref + 1), where ref < seam_pixels
// is a seam pixel's index and ref = seam_pixels + r names the band's r-th tagged merge.
template <typename T>
struct TaggedMerge {
  KeyedId<T> edge;
  int32_t child[2];
};

// On band b's thread, after its Kruskal made `merges` merges: marks the band's tagged merges (and
// its unused slots) dead in tree.dead (zeroed beforehand) and writes them, in creation order, as
// records for the replay. `rank` is scratch of one int32 per band slot.
template <typename T>
void split_band(const BandLayout& lay, int b, int64_t merges, MergeTree<T>& tree, int32_t* rank,
                Scratch<TaggedMerge<T>>& tagged) {
  const int64_t first = lay.first_slot(b), end = lay.end_slot(b);
  const int32_t* const child = tree.bands.child.data();
  uint8_t* const dead = tree.dead.data();
  // A pixel is on a seam unless it lies between the band's seam rows (none above the first band,
  // none below the last).
  const int64_t n = lay.n;
  const int64_t inner_lo = lay.start[b] + (b > 0 ? lay.w : 0);
  const uint64_t inner_len = static_cast<uint64_t>(lay.start[b + 1] - (b + 1 < lay.bands() ? lay.w : 0) - inner_lo);
  // Branch-free: whether a child is a pixel or a merge is a coin toss the predictor cannot learn.
  // Locals above: dead[] is bytes, whose stores may alias anything, so fields would be reloaded.
  auto touches_seam = [=](int32_t c) -> uint8_t {
    const uint8_t pixel = c < n;  // 0 or 1; masks below instead of a select the compiler would branch on
    const int64_t mask = -static_cast<int64_t>(pixel);
    const int64_t slot = ((c - n) & ~mask) | (first & mask);  // own first slot for a pixel (read, unused)
    const uint8_t merge_tag = dead[slot];
    const uint8_t pixel_tag = static_cast<uint64_t>(c - inner_lo) >= inner_len;
    return static_cast<uint8_t>((pixel_tag & pixel) | (merge_tag & (1 - pixel)));
  };
  int32_t count = 0;
  for (int64_t k = first; k < first + merges; ++k) {
    const uint8_t tag = touches_seam(child[2 * k]) | touches_seam(child[2 * k + 1]);
    dead[k] = tag;
    rank[k] = count;
    count += tag;
  }
  // The records (a second pass: few merges are tagged, and the first pass stays branch-free).
  const int32_t seam_pixels = static_cast<int32_t>(2 * lay.w * (lay.bands() - 1));
  tagged.resize(static_cast<size_t>(count));
  TaggedMerge<T>* rec = tagged.data();
  for (int64_t k = first; k < first + merges; ++k) {
    if (!dead[k]) continue;
    rec->edge = tree.bands.merges[k];
    for (int q = 0; q < 2; ++q) {
      const int32_t c = child[2 * k + q];
      if (c < n) {
        const bool inner = static_cast<uint64_t>(c - inner_lo) < inner_len;
        rec->child[q] = inner ? c : -lay.seam_index(b, c) - 1;
      } else {
        rec->child[q] = dead[c - n] ? -(seam_pixels + rank[c - n]) - 1 : c;
      }
    }
    ++rec;
  }
  int32_t* const unused_child = tree.bands.child.data();
  for (int64_t k = first + merges; k < end; ++k) {  // unused slots: dead, with harmless children
    dead[k] = 1;
    unused_child[2 * k] = unused_child[2 * k + 1] = 0;
  }
}

namespace detail {

// Union-find over seam pixels, with the node that stands for each glued component.
class SeamSets {
 public:
  explicit SeamSets(const BandLayout& lay) {
    for (int s = 0; s + 1 < lay.bands(); ++s) {
      for (int64_t p = lay.start[s + 1] - lay.w; p < lay.start[s + 1] + lay.w; ++p) {
        up_.push_back(static_cast<int32_t>(up_.size()));
        node_.push_back(static_cast<int32_t>(p));
      }
    }
  }
  int32_t find(int32_t x) {
    while (up_[x] != x) {
      up_[x] = up_[up_[x]];
      x = up_[x];
    }
    return x;
  }
  int32_t join(int32_t a, int32_t b) {  // two roots; returns the new root
    up_[b] = a;
    return a;
  }
  int32_t& node(int32_t root) { return node_[root]; }

 private:
  std::vector<int32_t> up_, node_;
};

}  // namespace detail

// Replays the tagged merges of every band and the sorted seam edges (seams[s]: edges from band s
// to band s + 1) into the glue slots (see the file comment). With `require_tree`, a refused merge
// (a cycle) or a missing one raises std::invalid_argument naming "tree".
// `merges[b]` is how many merges band b's Kruskal made.
template <typename T, typename Endpoints>
void join_bands(const BandLayout& lay, const std::vector<int64_t>& merges,
                const std::vector<Scratch<TaggedMerge<T>>>& tagged, const std::vector<Scratch<KeyedId<T>>>& seams,
                Endpoints endpoints, bool require_tree, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = lay.n, slots = tree.bands.size();
  const int bands = lay.bands();
  const int32_t seam_pixels = static_cast<int32_t>(2 * lay.w * (bands - 1));
  int64_t live = 0;  // merges that stay in band slots
  for (int b = 0; b < bands; ++b) live += merges[b] - static_cast<int64_t>(tagged[b].size());
  const int64_t needed = n - 1 - live;
  tree.glue.resize(needed);
  int32_t* const gchild = tree.glue.child.data();
  Item* const gmerges = tree.glue.merges.data();
  detail::SeamSets sets(lay);
  // For each replayed tagged merge (band, rank): a seam pixel of its component, as a set index.
  std::vector<Scratch<int32_t>> seam_of(static_cast<size_t>(bands));
  for (int b = 0; b < bands; ++b) seam_of[b].resize(tagged[b].size());
  // A child reference (see TaggedMerge) as a node of the joined tree and, when its component
  // touches a seam, the component's root in `sets` (else -1).
  auto resolve = [&](int b, int32_t ref, int32_t* root) -> int32_t {
    if (ref >= 0) {
      *root = -1;
      return ref;
    }
    const int32_t v = -ref - 1;
    *root = sets.find(v < seam_pixels ? v : seam_of[b][v - seam_pixels]);
    return sets.node(*root);
  };
  auto cycle = [] { throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle"); };
  int64_t g = 0;
  auto emit = [&](int32_t c0, int32_t c1, const Item& e) {
    if (g >= needed) cycle();  // more merges than a spanning tree has
    gchild[2 * g] = c0;
    gchild[2 * g + 1] = c1;
    gmerges[g] = e;
    return static_cast<int32_t>(n + slots + g++);
  };
  // Sources: the tagged merges of band b (source b) and the edges of seam s (source bands + s).
  std::vector<int64_t> pos(static_cast<size_t>(2 * bands - 1), 0);
  // Many sources are read in an interleaved order the hardware prefetcher cannot follow: each read
  // prefetches its source a few records ahead.
  constexpr int64_t kAhead = 8;
  auto head = [&](int src, Item* e) {
    const int64_t p = pos[src];
    if (src < bands) {
      const Scratch<TaggedMerge<T>>& list = tagged[src];
      if (p >= static_cast<int64_t>(list.size())) return false;
      if (p + kAhead < static_cast<int64_t>(list.size())) __builtin_prefetch(&list[p + kAhead]);
      *e = list[p].edge;
    } else {
      const Scratch<Item>& list = seams[src - bands];
      if (p >= static_cast<int64_t>(list.size())) return false;
      if (p + kAhead < static_cast<int64_t>(list.size())) __builtin_prefetch(&list[p + kAhead]);
      *e = list[p];
    }
    return true;
  };
  KWayMerge<Item> heads(pos.size());
  for (int src = 0; src < static_cast<int>(pos.size()); ++src) {
    Item e;
    if (head(src, &e)) heads.add(e, src);
  }
  while (!heads.empty()) {
    const int src = heads.top_source();
    const int64_t at = pos[src]++;
    Item next;
    if (head(src, &next)) heads.replace_top(next);
    else heads.pop();
    if (src >= bands) {  // a seam edge
      const int s = src - bands;
      const Item se = seams[s][at];
      int64_t u, v;
      endpoints(se.id(), &u, &v);
      const int64_t base = 2 * lay.w * s - (lay.start[s + 1] - lay.w);
      const int32_t ru = sets.find(static_cast<int32_t>(base + u));
      const int32_t rv = sets.find(static_cast<int32_t>(base + v));
      if (ru == rv) {
        if (require_tree) cycle();
        continue;
      }
      const int32_t node = emit(sets.node(ru), sets.node(rv), se);
      sets.node(sets.join(ru, rv)) = node;
      continue;
    }
    const int b = src;
    const TaggedMerge<T>& t = tagged[b][at];
    int32_t r0, r1;
    const int32_t c0 = resolve(b, t.child[0], &r0);
    const int32_t c1 = resolve(b, t.child[1], &r1);
    const int32_t root = r0 >= 0 ? r0 : r1;  // a tagged merge has a seam pixel below a child
    seam_of[b][at] = root;
    if (r0 >= 0 && r0 == r1) {  // already joined across a seam
      if (require_tree) cycle();
      continue;
    }
    const int32_t node = emit(c0, c1, t.edge);
    sets.node(r0 >= 0 && r1 >= 0 ? sets.join(r0, r1) : root) = node;
  }
  if (g != needed) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
}

}  // namespace clipapro
