// Minimal thread-parallel loop: no OpenMP, so the extension never fights torch's OpenMP runtime.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace clipapro {

// Calls fn(i) for every i in [0, n), spreading indices over up to `threads` threads (dynamic
// schedule, one index at a time). The first exception thrown by any call is rethrown here.
template <typename Fn>
void parallel_for(int64_t n, int threads, Fn&& fn) {
  if (n <= 0) return;
  const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (t == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::mutex mu;
  int64_t next = 0;
  std::exception_ptr err;
  auto worker = [&]() {
    for (;;) {
      int64_t i;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next >= n || err) return;
        i = next++;
      }
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!err) err = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(t - 1));
  for (int64_t k = 1; k < t; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace clipapro
