// Python bindings of clipapro._C. Kernels take contiguous numpy buffers (zero-copy views of CPU
// tensors), release the GIL, and know nothing of torch: the Python layer validates inputs and owns
// devices and dtypes. The bindings check again what memory indexing relies on (shapes, ranges,
// prebuilt trees), since they are callable on their own. std::invalid_argument surfaces as
// ValueError; allocation failures as MemoryError naming the sizes (OutOfMemory, checked.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/checked.h"
#include "common/finite.h"
#include "common/parallel.h"
#include "local/local_filter.h"
#include "tree/build.h"
#include "tree/list_sweep.h"
#include "tree/sweep.h"
#include "tree/validate.h"

namespace py = pybind11;
using namespace clipapro;

namespace {

template <typename T>
using Arr = py::array_t<T, py::array::c_style>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// Threads actually started: at least one, and no more than a few per core (the Python layer caps
// at the core count already; this keeps a direct caller from starting thousands).
int usable_threads(int threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::clamp(threads, 1, std::max(2, cores));
}

std::string shape(std::initializer_list<int64_t> dims) {
  std::string out = "(";
  for (int64_t d : dims) out += (out.size() > 1 ? ", " : "") + std::to_string(d);
  return out + ")";
}

// Runs fn(); an allocation failure inside becomes OutOfMemory with `what()` (the op and its sizes).
template <typename Fn, typename What>
auto guarded(Fn&& fn, What&& what) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    throw OutOfMemory(what() + ": out of memory");
  } catch (const std::length_error&) {
    throw OutOfMemory(what() + ": a buffer would exceed the largest possible size");
  }
}

void require_zeta(double zeta) {
  require(std::isfinite(zeta) && zeta > 0, "zeta must be finite and > 0, got " + std::to_string(zeta));
}

// Runs fn(item, inner_threads) for every batch item: items in parallel when there are enough of
// them, otherwise one after another with the threads given to the item.
template <typename Fn>
void over_batch(int64_t b, int threads, Fn&& fn) {
  if (b >= threads) {
    parallel_for(b, threads, [&](int64_t i) { fn(i, 1); });
  } else {
    for (int64_t i = 0; i < b; ++i) fn(i, threads);
  }
}

// Edge ids (2 per pixel) and node ids (pixels, band slots and glue slots: under 3 per pixel) must
// fit their 32-bit fields.
void require_size(int64_t h, int64_t w) {
  int64_t n = 0;
  require(h >= 1 && w >= 1 && checked_mul(h, w, &n) && n <= (int64_t(1) << 29),
          "images of more than 2^29 pixels are not supported (got " + std::to_string(h) + " x " + std::to_string(w) +
              ")");
}

template <typename T>
py::tuple build_tree(Arr<T> guide, int64_t h, int64_t w, std::optional<Arr<int64_t>> edges, int threads,
                     int64_t band_pixels) {
  require_size(h, w);
  require(guide.ndim() == 3 && guide.shape(2) == h * w, "guide must be planar (B, F, H*W)");
  threads = usable_threads(threads);
  const int64_t b = guide.shape(0), n = h * w, f = guide.shape(1);
  if (edges) require(edges->ndim() == 3 && edges->shape(0) == b && edges->shape(1) == n - 1 && edges->shape(2) == 2,
                     "tree must be (B, H*W-1, 2)");
  Arr<int32_t> parent({b, 2 * n - 1});
  Arr<T> height({b, n - 1});
  Arr<int64_t> tree_edges({b, n - 1, int64_t(2)});
  Arr<T> tree_weights({b, n - 1});
  const T* g = guide.data();
  const int64_t* e = edges ? edges->data() : nullptr;
  int32_t* pp = parent.mutable_data();
  T* hp = height.mutable_data();
  int64_t* ep = tree_edges.mutable_data();
  T* wp = tree_weights.mutable_data();
  {
    py::gil_scoped_release release;
    guarded([&] {
      over_batch(b, threads, [&](int64_t i, int inner) {
        TreeBuffers<T> out{pp + i * (2 * n - 1), hp + i * (n - 1), ep + i * (n - 1) * 2, wp + i * (n - 1)};
        const BuildOptions opt{inner, band_pixels};
        if (e) build_given_tree(g + i * n * f, h, w, f, e + i * (n - 1) * 2, out, opt);
        else build_grid_tree(g + i * n * f, h, w, f, out, opt);
      });
    }, [&] { return "kruskal_tree of a guide " + shape({b, f, h, w}); });
  }
  return py::make_tuple(parent, height, tree_edges, tree_weights);
}

template <typename T>
Arr<T> tree_filter(Arr<T> values, Arr<T> guide, int64_t h, int64_t w, std::optional<Arr<int64_t>> edges,
                   double zeta, bool normalize, bool include_self, int threads, int64_t band_pixels) {
  require_size(h, w);
  require(values.ndim() == 3 && values.shape(2) == h * w, "values must be planar (B, C, H*W)");
  require(guide.ndim() == 3 && guide.shape(0) == values.shape(0) && guide.shape(2) == h * w,
          "guide must be planar (B, F, H*W)");
  require_zeta(zeta);
  threads = usable_threads(threads);
  const int64_t b = values.shape(0), n = h * w, c = values.shape(1), f = guide.shape(1);
  if (edges) require(edges->ndim() == 3 && edges->shape(0) == b && edges->shape(1) == n - 1 && edges->shape(2) == 2,
                     "tree must be (B, H*W-1, 2)");
  Arr<T> out({b, c, n});
  const T* x = values.data();
  const T* g = guide.data();
  const int64_t* e = edges ? edges->data() : nullptr;
  T* y = out.mutable_data();
  SweepOptions opt{normalize, include_self};
  {
    py::gil_scoped_release release;
    guarded([&] { over_batch(b, threads, [&](int64_t i, int inner) {
      const T* xi = x + i * n * c;
      T* yi = y + i * n * c;
      if (n == 1) {  // one pixel: its own value (or nothing)
        for (int64_t k = 0; k < c; ++k) yi[k] = include_self ? xi[k] : T(0);
        return;
      }
      MergeTree<T> tree;
      const BuildOptions bopt{inner, band_pixels};
      if (e) given_merge_tree(g + i * n * f, h, w, f, e + i * (n - 1) * 2, bopt, tree);
      else grid_merge_tree(g + i * n * f, h, w, f, bopt, tree);
      if (use_list_sweep(c)) {
        list_sweep(tree, c, xi, zeta, opt, inner, yi);
        return;
      }
      Scratch<int32_t> parent;
      Scratch<T> height;
      parent.resize(static_cast<size_t>(2 * n - 1));
      height.resize(static_cast<size_t>(n - 1));
      renumber_breadth_first(tree, TreeBuffers<T>{parent.data(), height.data(), nullptr, nullptr}, inner);
      tree_sweep(n, c, xi, parent.data(), height.data(), zeta, opt, inner, yi);
    }); }, [&] { return "tree_filter of values " + shape({b, c, h, w}) + " with a guide of " + std::to_string(f) +
                        " channels"; });
  }
  return out;
}

template <typename T>
Arr<T> sweep(Arr<T> values, Arr<int32_t> parent, Arr<T> height, double zeta, bool normalize, bool include_self,
             int threads) {
  require(values.ndim() == 3, "values must be planar (B, C, N)");
  const int64_t b = values.shape(0), c = values.shape(1), n = values.shape(2);
  require(n >= 1 && n <= (int64_t(1) << 29), "trees of more than 2^29 pixels are not supported (got N = " +
                                                 std::to_string(n) + ")");
  require(parent.ndim() == 2 && parent.shape(0) == b && parent.shape(1) == 2 * n - 1, "parent must be (B, 2N-1)");
  require(height.ndim() == 2 && height.shape(0) == b && height.shape(1) == n - 1, "height must be (B, N-1)");
  require_zeta(zeta);
  threads = usable_threads(threads);
  Arr<T> out({b, c, n});
  const T* x = values.data();
  const int32_t* pp = parent.data();
  const T* hp = height.data();
  T* y = out.mutable_data();
  SweepOptions opt{normalize, include_self};
  {
    py::gil_scoped_release release;
    guarded([&] { over_batch(b, threads, [&](int64_t i, int inner) {
      const std::string err = sweep_tree_error(n, pp + i * (2 * n - 1), hp + i * (n - 1));
      if (!err.empty()) {
        throw std::invalid_argument("guide is not a valid KruskalTree (item " + std::to_string(i) + "): " + err);
      }
      tree_sweep(n, c, x + i * n * c, pp + i * (2 * n - 1), hp + i * (n - 1), zeta, opt, inner, y + i * n * c);
    }); }, [&] { return "tree_filter of values " + shape({b, c, n}) + " on a KruskalTree"; });
  }
  return out;
}

template <typename T>
Arr<T> local(Arr<T> values, Arr<T> image, int64_t kernel_size, int64_t dilation, double zeta, int64_t iterations,
             int threads) {
  require(values.ndim() == 4 && image.ndim() == 4, "values and image must be 4-D");
  const int64_t b = values.shape(0), c = values.shape(1), h = values.shape(2), w = values.shape(3);
  require(image.shape(0) == b && image.shape(2) == h && image.shape(3) == w, "image must be (B, F, H, W)");
  require_size(h, w);
  require(kernel_size >= 1 && kernel_size % 2 == 1, "kernel_size must be odd and >= 1, got " + std::to_string(kernel_size));
  require(dilation >= 1, "dilation must be >= 1, got " + std::to_string(dilation));
  require(iterations >= 0, "iterations must be >= 0, got " + std::to_string(iterations));
  require_zeta(zeta);
  threads = usable_threads(threads);
  const int64_t f = image.shape(1);
  LocalParams p{kernel_size, dilation, zeta, iterations};
  auto what = [&] {
    const Stencil st(p, h, w);
    return "local_filter of values " + shape({b, c, h, w}) + " with kernel_size " + std::to_string(kernel_size) +
           " and dilation " + std::to_string(dilation) + " (" + std::to_string(st.ky) + " x " + std::to_string(st.kx) +
           " offsets inside the image)";
  };
  require_allocatable(local_filter_bytes(b, c, h, w, p, threads, sizeof(T)), what());
  Arr<T> out({b, c, h, w});
  const T* x = values.data();
  const T* img = image.data();
  T* y = out.mutable_data();
  {
    py::gil_scoped_release release;
    guarded([&] { local_filter(x, img, b, c, f, h, w, p, threads, y); }, what);
  }
  return out;
}

// True when every element is finite.
template <typename T>
bool finite(Arr<T> a, int threads) {
  const T* p = a.data();
  const int64_t n = a.size();
  threads = usable_threads(threads);
  py::gil_scoped_release release;
  return all_finite(p, n, threads);
}

// Largest |x| (Inf or NaN when an element is).
template <typename T>
double largest_magnitude(Arr<T> a, int threads) {
  const T* p = a.data();
  const int64_t n = a.size();
  threads = usable_threads(threads);
  py::gil_scoped_release release;
  return static_cast<double>(abs_max(p, n, threads));
}

template <typename T>
void define(py::module_& m) {
  m.def("all_finite", &finite<T>, py::arg("array"), py::arg("threads") = 1, "True when no element is NaN or Inf.");
  m.def("abs_max", &largest_magnitude<T>, py::arg("array"), py::arg("threads") = 1,
        "Largest absolute value (Inf or NaN when an element is).");
  m.def("build_tree", &build_tree<T>, py::arg("guide"), py::arg("height"), py::arg("width"), py::arg("edges"),
        py::arg("threads"), py::arg("band_pixels") = 0,
        "Kruskal reconstruction tree of a grid (or of given tree edges): (parent, height, edges, weights).");
  m.def("tree_filter", &tree_filter<T>, py::arg("values"), py::arg("guide"), py::arg("height"), py::arg("width"),
        py::arg("edges"), py::arg("zeta"), py::arg("normalize"), py::arg("include_self"), py::arg("threads"),
        py::arg("band_pixels") = 0,
        "Fused tree build + exact global propagation; planar values (B, C, N) and guide (B, F, N).");
  m.def("tree_sweep", &sweep<T>, py::arg("values"), py::arg("parent"), py::arg("height"), py::arg("zeta"),
        py::arg("normalize"), py::arg("include_self"), py::arg("threads"),
        "Exact global propagation on prebuilt reconstruction trees.");
  m.def("local_filter", &local<T>, py::arg("values"), py::arg("image"), py::arg("kernel_size"), py::arg("dilation"),
        py::arg("zeta"), py::arg("iterations"), py::arg("threads"),
        "Iterated normalised Gaussian colour-kernel filter; planar (B, C, H, W).");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "clipapro compiled propagation core (CPU)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
  define<float>(m);
  define<double>(m);
  m.attr("has_cuda") = false;
}
