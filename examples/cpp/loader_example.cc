// The C++ API in one page: iterate a dataset for a few epochs and print the
// throughput and the loader's stats.
//
//   stoker_example_loader DIR_OR_MANIFEST [epochs] [threads]
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "stoker/loader.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_MANIFEST [epochs] [threads]\n", argv[0]);
    return 2;
  }
  stoker::LoaderOptions options;
  options.uri = argv[1];
  options.batch_size = 64;
  options.shuffle = true;
  options.transform.kind = stoker::TransformOptions::Kind::kTrain;
  options.transform.normalize = true;
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 2;
  options.threads = argc > 3 ? std::atoi(argv[3]) : 0;

  auto loader = stoker::Loader::Open(options);
  if (!loader.ok()) {
    std::fprintf(stderr, "%s\n", loader.status().ToString().c_str());
    return 1;
  }
  for (int epoch = 0; epoch < epochs; ++epoch) {
    (*loader)->SetEpoch(epoch);
    (*loader)->Start();
    auto t0 = std::chrono::steady_clock::now();
    int64_t images = 0;
    double checksum = 0;
    while (true) {
      auto batch = (*loader)->Next();
      if (!batch.ok()) {
        std::fprintf(stderr, "%s\n", batch.status().ToString().c_str());
        return 1;
      }
      if (!batch->has_value()) break;
      const stoker::Batch& b = **batch;
      images += b.size();
      checksum += static_cast<const float*>(b.images_data())[0];
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("epoch %d: %lld images in %.2f s, %.0f images/s (checksum %.3f)\n", epoch,
                static_cast<long long>(images), s, images / s, checksum);
  }
  auto st = (*loader)->stats();
  std::printf("delivered %lld, skipped %lld, bytes read %lld, stall %.2f s\n",
              static_cast<long long>(st.samples_delivered),
              static_cast<long long>(st.samples_skipped), static_cast<long long>(st.bytes_read),
              st.stall_s);
  for (const auto& stage : st.stages) {
    std::printf("  %-7s items %lld  busy %.2f CPU-s  waited for input %.2f s, to hand on %.2f s\n",
                stage.name.c_str(), static_cast<long long>(stage.items), stage.busy_cpu_s,
                stage.wait_input_s, stage.wait_output_s);
  }
  // Where the time went: the stage that limited the rate, in one sentence.
  std::printf("%s\n", (*loader)->Profile().summary.c_str());
  return 0;
}
