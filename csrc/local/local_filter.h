// Local propagation: an iterated, normalised k x k Gaussian colour-kernel stencil.
//
// Kernel weights depend only on the image, so they are computed once per image ((k*k, H, W),
// normalised, zero outside the image); each iteration is then a stencil over planar channels.
// Channels (and images) are independent across iterations, so each worker runs all iterations of
// its planes in its own zero-padded ping-pong buffers, with no barrier between iterations.
//
// Only the offsets that can land inside the image take part (a kernel or dilation reaching past
// the image would otherwise size the weights and the padding by the reach, not by the image): at
// most (2H-1) x (2W-1) offsets and a padding under the image's own size, whatever the arguments.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/affinity.h"
#include "common/checked.h"
#include "common/parallel.h"
#include "common/scratch.h"

namespace clipapro {

struct LocalParams {
  int64_t kernel_size = 5;
  int64_t dilation = 1;
  double zeta = 0.15;
  int64_t iterations = 20;
};

// The offsets of a k x k kernel with dilation d that can reach inside an (h, w) image: kernel steps
// -ry..ry down and -rx..rx across (an offset of d*|step| >= h never lands inside), as a ky x kx
// grid of kk offsets, and the padding that holds them.
struct Stencil {
  int64_t ry, rx, ky, kx, kk, pad_y, pad_x;
  Stencil(const LocalParams& p, int64_t h, int64_t w) {
    const int64_t r = p.kernel_size / 2, d = p.dilation;
    ry = std::min(r, (h - 1) / d);
    rx = std::min(r, (w - 1) / d);
    ky = 2 * ry + 1;
    kx = 2 * rx + 1;
    kk = ky * kx;
    pad_y = ry * d;
    pad_x = rx * d;
  }
  int64_t plane(int64_t h, int64_t w) const { return (h + 2 * pad_y) * (w + 2 * pad_x); }
};

// Normalised kernel weights of one image (f, h, w) -> wts (kk, h, w). The kernel is symmetric,
// K(i, i+o) = K(i+o, i), so each exponential is evaluated once for an offset and its mirror.
template <typename T>
void local_weights(const T* img, int64_t f, int64_t h, int64_t w, const LocalParams& p, T* wts) {
  const Stencil st(p, h, w);
  const int64_t kk = st.kk, n = h * w;
  const Affinity<T> aff(p.zeta);
  std::fill(wts, wts + kk * n, T(0));
  std::fill(wts + (kk / 2) * n, wts + (kk / 2 + 1) * n, T(1));  // centre offset
  std::vector<T> d2(w);
  for (int64_t dy = 0; dy <= st.ry; ++dy) {
    for (int64_t dx = -st.rx; dx <= st.rx; ++dx) {
      if (dy == 0 && dx <= 0) continue;  // the positive half of the offsets; mirrors come for free
      const int64_t oy = dy * p.dilation, ox = dx * p.dilation;
      const int64_t o = (dy + st.ry) * st.kx + (dx + st.rx), mirror = kk - 1 - o;
      T* wo = wts + o * n;
      T* wm = wts + mirror * n;
      const int64_t x0 = std::max<int64_t>(0, -ox), x1 = std::min<int64_t>(w, w - ox);
      for (int64_t y = 0; y + oy < h; ++y) {
        std::fill(d2.begin(), d2.end(), T(0));
        for (int64_t c = 0; c < f; ++c) {
          const T* a = img + c * n + y * w;
          const T* b = img + c * n + (y + oy) * w + ox;
          for (int64_t x = x0; x < x1; ++x) {
            const T d = a[x] - b[x];
            d2[x] += d * d;
          }
        }
        T* row = wo + y * w;
        T* mrow = wm + (y + oy) * w + ox;  // the neighbour's weight back to this pixel
        for (int64_t x = x0; x < x1; ++x) {
          const T v = aff(d2[x]);
          row[x] = v;
          mrow[x] = v;
        }
      }
    }
  }
  // Normalise over the k*k offsets (the centre weight is 1, so the sum is never zero).
  Scratch<T> sum(n, T(0));
  for (int64_t q = 0; q < kk; ++q) {
    const T* wq = wts + q * n;
    for (int64_t i = 0; i < n; ++i) sum[i] += wq[i];
  }
  for (int64_t i = 0; i < n; ++i) sum[i] = T(1) / sum[i];
  for (int64_t q = 0; q < kk; ++q) {
    T* wq = wts + q * n;
    for (int64_t i = 0; i < n; ++i) wq[i] *= sum[i];
  }
}

// All iterations for channels [c0, c1) of one image: planar values (c, h, w) -> out (c, h, w), with
// the image's normalised weights (k*k, h, w). Rows are the unit of work: a row's k*k weight rows
// are used for every channel while they sit in cache, so the weights stream from memory once per
// iteration (not once per channel). With row_threads > 1, each iteration's rows are split among
// threads (one barrier per iteration).
template <typename T>
void local_channels(const T* in, const T* wts, int64_t c0, int64_t c1, int64_t h, int64_t w, const LocalParams& p,
                    int row_threads, T* out) {
  const Stencil st(p, h, w);
  const int64_t kk = st.kk, pad_y = st.pad_y, pad_x = st.pad_x;
  const int64_t wp = w + 2 * pad_x, n = h * w, plane = st.plane(h, w), c = c1 - c0;
  if (p.iterations == 0) {
    std::memcpy(out + c0 * n, in + c0 * n, sizeof(T) * n * c);
    return;
  }
  Scratch<T> buf_a(static_cast<size_t>(c * plane), T(0)), buf_b(static_cast<size_t>(c * plane), T(0));
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      std::memcpy(&buf_a[ch * plane + (y + pad_y) * wp + pad_x], in + (c0 + ch) * n + y * w, sizeof(T) * w);
  std::vector<int64_t> shift(kk);
  {
    int64_t o = 0;
    for (int64_t dy = -st.ry; dy <= st.ry; ++dy)
      for (int64_t dx = -st.rx; dx <= st.rx; ++dx) shift[o++] = dy * p.dilation * wp + dx * p.dilation;
  }
  constexpr int64_t kChunk = 64;
  T* src = buf_a.data();
  T* dst = buf_b.data();
  auto rows = [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* center = src + ch * plane + (y + pad_y) * wp + pad_x;
        T* orow = dst + ch * plane + (y + pad_y) * wp + pad_x;
        for (int64_t x0 = 0; x0 < w; x0 += kChunk) {
          const int64_t len = std::min(kChunk, w - x0);
          T acc[kChunk];
          for (int64_t i = 0; i < len; ++i) acc[i] = T(0);
          for (int64_t o = 0; o < kk; ++o) {
            const T* wq = wts + o * n + y * w + x0;
            const T* sq = center + shift[o] + x0;
            for (int64_t i = 0; i < len; ++i) acc[i] += wq[i] * sq[i];
          }
          std::memcpy(orow + x0, acc, sizeof(T) * len);
        }
      }
    }
  };
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(row_threads, h / 8));
  for (int64_t it = 0; it < p.iterations; ++it) {
    if (parts == 1) {
      rows(0, h);
    } else {
      parallel_for(parts, static_cast<int>(parts), [&](int64_t q) { rows(q * h / parts, (q + 1) * h / parts); });
    }
    std::swap(src, dst);
  }
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      std::memcpy(out + (c0 + ch) * n + y * w, src + ch * plane + (y + pad_y) * wp + pad_x, sizeof(T) * w);
}

// One image: channel groups run in parallel with no barrier between iterations when there are at
// least as many channels as threads; otherwise the rows of each iteration are split.
template <typename T>
void local_image(const T* in, const T* wts, int64_t c, int64_t h, int64_t w, const LocalParams& p, int threads,
                 T* out) {
  if (c >= threads && threads > 1) {
    parallel_for(threads, threads, [&](int64_t g) {
      local_channels(in, wts, g * c / threads, (g + 1) * c / threads, h, w, p, 1, out);
    });
  } else {
    local_channels(in, wts, 0, c, h, w, p, threads, out);
  }
}

// values (b, c, h, w), image (b, f, h, w) -> out (b, c, h, w). Small images in a large batch run one
// image per thread; otherwise images run one after another with their rows split across threads.
template <typename T>
void local_filter(const T* values, const T* image, int64_t b, int64_t c, int64_t f, int64_t h, int64_t w,
                  const LocalParams& p, int threads, T* out) {
  const int64_t n = h * w, kk = Stencil(p, h, w).kk;
  auto one = [&](int64_t i, int inner) {
    Scratch<T> wts(static_cast<size_t>(kk * n));
    local_weights(image + i * f * n, f, h, w, p, wts.data());
    local_image(values + i * c * n, wts.data(), c, h, w, p, inner, out + i * c * n);
  };
  if (b >= threads && n * c <= (int64_t(1) << 20)) {
    parallel_for(b, threads, [&](int64_t i) { one(i, 1); });
  } else {
    for (int64_t i = 0; i < b; ++i) one(i, threads);
  }
}

// Bytes local_filter allocates at its peak for `threads` workers, or -1 when that overflows: the
// kernel weights of the images in flight and the padded ping-pong planes of their channels.
inline int64_t local_filter_bytes(int64_t b, int64_t c, int64_t h, int64_t w, const LocalParams& p, int threads,
                                  size_t elem) {
  const Stencil st(p, h, w);
  const int64_t images = std::max<int64_t>(1, std::min<int64_t>(b, threads));
  const int64_t weights = checked_product({st.kk, h, w}), planes = checked_product({2, c, st.plane(h, w)});
  if (weights < 0 || planes < 0) return -1;
  return checked_product({images, weights + planes, static_cast<int64_t>(elem)});
}

}  // namespace clipapro
