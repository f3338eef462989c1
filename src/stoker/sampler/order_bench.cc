// Shuffle quality and read cost of the chunk-aware order against the
// per-sample (full) shuffle, as docs/order.md quotes them:
//
//   build/cpp/order_bench [N] [page] [batch] [epochs] [world]
//
// (defaults 100000 64 256 10 8). Every figure is an average over `epochs`
// epochs of seed 1 (consecutive pairs for the epoch-to-epoch figures), from
// the Sampler a Loader uses:
//   same batch   chance that two given samples of one page share a batch
//   pages/batch  mean distinct pages in a batch of the global order
//   repeat pair  chance that two samples sharing a batch share one again
//                in the next epoch (a full shuffle: ~batch/N)
//   distance     mean |position in epoch e+1 - position in epoch e|
//   opens        pages read per epoch holding the window's W pages open
//                (least recently used closed first); the full shuffle with
//                the same W open pages reads about one page per sample
//   rank p/b, rank opens  the same for rank 0 of `world` (a batch of 256 of
//                its own positions, which are every world-th of the order)
//   ns/index     IndexAt, sequential positions, one thread (the fastest epoch)
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "stoker/sampler/chunk_order.h"
#include "stoker/sampler/sampler.h"

namespace {

using stoker::sampler::Sampler;
using stoker::sampler::SamplerOptions;

struct Figures {
  double same_batch = 0, pages_per_batch = 0, repeat_pair = 0, distance = 0, opens = 0;
  double rank_pages_per_batch = 0, rank_opens = 0, ns_per_index = 0;
};

// Pages read when `pages_seq` is consumed with `open` pages held, the least
// recently used one closed to make room.
uint64_t Opens(const std::vector<uint32_t>& pages_seq, uint32_t open) {
  std::vector<uint32_t> held;  // most recent last
  uint64_t opens = 0;
  for (uint32_t p : pages_seq) {
    auto it = std::find(held.begin(), held.end(), p);
    if (it != held.end()) {
      held.erase(it);
    } else {
      ++opens;
      if (held.size() == open) held.erase(held.begin());
    }
    held.push_back(p);
  }
  return opens;
}

double MeanDistinctPerBatch(const std::vector<uint32_t>& pages_seq, uint64_t batch) {
  uint64_t batches = 0, distinct = 0;
  std::vector<uint32_t> b;
  for (uint64_t s = 0; s + batch <= pages_seq.size(); s += batch) {
    b.assign(pages_seq.begin() + static_cast<std::ptrdiff_t>(s),
             pages_seq.begin() + static_cast<std::ptrdiff_t>(s + batch));
    std::sort(b.begin(), b.end());
    distinct += static_cast<uint64_t>(std::unique(b.begin(), b.end()) - b.begin());
    ++batches;
  }
  return batches ? static_cast<double>(distinct) / static_cast<double>(batches) : 0;
}

Figures Measure(uint64_t n, uint32_t page, uint64_t batch, int epochs, uint64_t world,
                uint32_t window /* 0: full shuffle */, uint32_t open_for_full) {
  auto sizes = std::make_shared<std::vector<uint32_t>>();
  for (uint64_t left = n; left > 0; left -= std::min<uint64_t>(left, page)) {
    sizes->push_back(static_cast<uint32_t>(std::min<uint64_t>(left, page)));
  }
  SamplerOptions options{.num_samples = n, .shuffle = true, .seed = 1};
  if (window > 0) {
    options.page_sizes = sizes;
    options.window_pages = window;
  }
  const uint32_t open = window > 0 ? window : open_for_full;
  Sampler sampler(options);
  std::vector<uint32_t> page_of(n);
  for (uint64_t i = 0; i < n; ++i) page_of[i] = static_cast<uint32_t>(i / page);

  Figures f;
  std::vector<uint64_t> pos(n), prev_pos(n), order(n), prev_order(n);
  std::vector<uint32_t> pages_seq(n), rank_seq;
  for (int e = 0; e < epochs; ++e) {
    sampler.SetEpoch(e);
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t g = 0; g < n; ++g) order[g] = sampler.IndexAt(g);
    const auto t1 = std::chrono::steady_clock::now();
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
    f.ns_per_index = e == 0 ? ns : std::min(f.ns_per_index, ns);
    for (uint64_t g = 0; g < n; ++g) {
      pos[order[g]] = g;
      pages_seq[g] = page_of[order[g]];
    }
    // Same batch: pairs of one page in one batch, of all pairs of one page.
    {
      std::vector<uint64_t> key(n);  // (page, batch) of each position
      for (uint64_t g = 0; g < n; ++g) key[g] = uint64_t{pages_seq[g]} << 32 | (g / batch);
      std::sort(key.begin(), key.end());
      double together = 0, pairs = 0;
      for (uint64_t i = 0; i < n;) {
        uint64_t j = i;
        while (j < n && key[j] == key[i]) ++j;
        together += static_cast<double>(j - i) * static_cast<double>(j - i - 1) / 2;
        i = j;
      }
      for (uint32_t s : *sizes) pairs += static_cast<double>(s) * (s - 1) / 2;
      f.same_batch += together / pairs;
    }
    f.pages_per_batch += MeanDistinctPerBatch(pages_seq, batch);
    f.opens += static_cast<double>(Opens(pages_seq, open));
    rank_seq.clear();
    for (uint64_t g = 0; g < n; g += world) rank_seq.push_back(pages_seq[g]);
    f.rank_pages_per_batch += MeanDistinctPerBatch(rank_seq, batch);
    f.rank_opens += static_cast<double>(Opens(rank_seq, open));
    if (e > 0) {
      double dist = 0;
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t d = pos[i] > prev_pos[i] ? pos[i] - prev_pos[i] : prev_pos[i] - pos[i];
        dist += static_cast<double>(d);
      }
      f.distance += dist / static_cast<double>(n);
      // Repeat pair: of the pairs sharing a batch last epoch, those sharing one now.
      double again = 0, pairs = 0;
      std::vector<uint64_t> now;
      for (uint64_t s = 0; s + batch <= n; s += batch) {
        now.clear();
        for (uint64_t g = s; g < s + batch; ++g) now.push_back(pos[prev_order[g]] / batch);
        std::sort(now.begin(), now.end());
        for (uint64_t i = 0; i < now.size();) {
          uint64_t j = i;
          while (j < now.size() && now[j] == now[i]) ++j;
          again += static_cast<double>(j - i) * static_cast<double>(j - i - 1) / 2;
          i = j;
        }
        pairs += static_cast<double>(batch) * static_cast<double>(batch - 1) / 2;
      }
      f.repeat_pair += again / pairs;
    }
    std::swap(pos, prev_pos);
    std::swap(order, prev_order);
  }
  const double e = epochs, e1 = epochs > 1 ? epochs - 1 : 1;
  f.same_batch /= e;
  f.pages_per_batch /= e;
  f.opens /= e;
  f.rank_pages_per_batch /= e;
  f.rank_opens /= e;
  f.distance /= e1;
  f.repeat_pair /= e1;
  return f;
}

uint64_t Arg(int argc, char** argv, int i, uint64_t fallback) {
  return argc > i ? std::strtoull(argv[i], nullptr, 10) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t n = Arg(argc, argv, 1, 100000);
  const uint32_t page = static_cast<uint32_t>(Arg(argc, argv, 2, 64));
  const uint64_t batch = Arg(argc, argv, 3, 256);
  const int epochs = static_cast<int>(Arg(argc, argv, 4, 10));
  const uint64_t world = Arg(argc, argv, 5, 8);
  if (n == 0 || page == 0 || batch == 0 || batch > n || epochs < 2 || world == 0) {
    std::fprintf(stderr, "usage: order_bench [N] [page] [batch] [epochs >= 2] [world]\n");
    return 2;
  }
  const uint64_t pages = (n + page - 1) / page;
  std::printf("N=%" PRIu64 ", pages of %u (%" PRIu64 " pages), batch %" PRIu64
              ", %d epochs, rank figures for rank 0 of %" PRIu64 "\n\n",
              n, page, pages, batch, epochs, world);
  std::printf("| order | same batch | pages/batch | repeat pair | distance | opens/epoch |"
              " rank pages/batch | rank opens/epoch | ns/index |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  auto row = [&](const char* name, const Figures& f) {
    std::printf("| %s | %.5f | %.1f | %.5f | %.0f | %.0f | %.1f | %.0f | %.0f |\n", name, f.same_batch,
                f.pages_per_batch, f.repeat_pair, f.distance, f.opens, f.rank_pages_per_batch,
                f.rank_opens, f.ns_per_index);
  };
  for (uint32_t window : {1u, 4u, 8u, 16u, 32u, 64u}) {
    char name[64];
    std::snprintf(name, sizeof name, "window %u", window);
    row(name, Measure(n, page, batch, epochs, world, window, 0));
  }
  row("full shuffle, 16 open", Measure(n, page, batch, epochs, world, 0, 16));
  std::printf("\nfull shuffle: same batch ~ (batch-1)/(N-1) = %.5f, distance ~ N/3 = %.0f\n",
              static_cast<double>(batch - 1) / static_cast<double>(n - 1),
              static_cast<double>(n) / 3);
  return 0;
}
