// A multi-threaded loader: worker threads decode (OpenCV), resize, augment and run an optional
// per-sample hook, a bounded number of batches ahead of the consumer.
//
// Determinism: the order of an epoch depends only on (seed, epoch) and the shuffle option, and
// sample i's augmentation and hook draw from an engine seeded by (seed, epoch, i), so batches are
// identical for any number of workers and any thread scheduling.
//
//   adfw::Loader loader(dataset.samples(adfw::Split::train), transforms, {.batch_size = 8});
//   loader.start_epoch(0);
//   while (auto batch = loader.next()) { ... batch->images ... }
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/data/sample.hpp"
#include "adfw/data/transforms.hpp"

namespace adfw {

struct LoaderOptions {
  int batch_size = 8;
  int num_workers = 2;
  int prefetch = 2;
  bool shuffle = false;
  bool drop_last = false;
  bool cache = false;
  bool augment = false;
  uint64_t seed = 0;
  std::string sampler = "all";

  template <class V>
  void fields(V& v) {
    v("batch_size", batch_size, "samples per batch (default 8)", Check::at_least(1));
    v("num_workers", num_workers, "decoding threads; 0 = decode in the calling thread (default 2)",
      Check::range(0, 256));
    v("prefetch", prefetch, "batches prepared ahead of the consumer (default 2)", Check::at_least(1));
    v("shuffle", shuffle, "shuffle the order every epoch, deterministically from seed and epoch (default false)");
    v("drop_last", drop_last, "drop a last, incomplete batch (default false)");
    v("cache", cache, "keep decoded, resized images in memory after the first epoch (default false)");
    v("augment", augment, "apply the transforms' training augmentations (flips, rotations) (default false)");
    v("seed", seed, "seed of the order and of every augmentation (default 0)");
    v("sampler", sampler,
      "which samples an epoch holds: all (default); balanced = every anomalous sample and as many normal ones "
      "drawn uniformly; balanced_frequency = the same, the normal ones drawn favouring the least often drawn so "
      "far (SegDecNet's frequency sampling)",
      Check::one_of({"all", "balanced", "balanced_frequency"}));
  }
};

/// Runs in a worker thread on each sample after augmentation and before normalisation (image
/// float32 (C,H,W) in 0..1, mask (1,H,W) {0,1}); the engine is seeded by (seed, epoch, index).
/// Anomaly synthesizers plug in here.
using SampleHook = std::function<void(Sample&, std::mt19937_64&)>;

class Loader {
 public:
  Loader(std::vector<SampleInfo> samples, TransformOptions transforms, LoaderOptions options = {},
         SampleHook hook = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t num_samples() const { return static_cast<int64_t>(samples_.size()); }
  int64_t num_batches() const;
  const std::vector<SampleInfo>& samples() const { return samples_; }
  const LoaderOptions& options() const { return opt_; }

  /// Starts (or restarts) epoch `epoch`: stops any running epoch and begins prefetching, from
  /// batch `first_batch` on (a resumed run skips what it already consumed without loading it).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  /// The next batch of the current epoch, std::nullopt once the epoch is exhausted. Rethrows a
  /// worker's exception (adfw::Error naming the file) at the batch it belongs to.
  std::optional<Batch> next();

  /// One sample, as a batch would hold it in `epoch` (synchronous).
  Sample load(std::size_t index, int64_t epoch = 0);
  /// Sample indices of each batch of `epoch`, in order.
  std::vector<std::vector<std::size_t>> epoch_plan(int64_t epoch) const;
  /// The samples of `epoch` before shuffling: every sample, or for a balanced sampler the anomalous
  /// ones followed by the normal ones drawn for this epoch (a pure function of seed and epoch: the
  /// frequency sampler replays the draws of the earlier epochs).
  std::vector<std::size_t> epoch_samples(int64_t epoch) const;

 private:
  Batch make_batch(const std::vector<std::size_t>& indices, int64_t epoch);
  void worker_loop();
  void stop_workers();

  std::vector<SampleInfo> samples_;
  Transform transform_;
  LoaderOptions opt_;
  SampleHook hook_;

  // in-memory cache of resized images (index -> decoded), filled lazily
  std::mutex cache_mu_;
  std::vector<std::shared_ptr<const DecodedImage>> cache_;

  // current epoch
  std::mutex mu_;
  std::condition_variable produced_, consumed_;
  std::vector<std::thread> workers_;
  std::vector<std::vector<std::size_t>> plan_;
  int64_t epoch_ = 0;
  std::size_t next_to_build_ = 0;
  std::size_t next_to_return_ = 0;
  bool stopping_ = false;
  bool started_ = false;
  std::map<std::size_t, Batch> ready_;
  std::map<std::size_t, std::exception_ptr> failed_;
};

}  // namespace adfw
