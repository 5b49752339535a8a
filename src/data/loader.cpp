#include "adfw/data/loader.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"
#include "random.hpp"

namespace adfw {

Loader::Loader(std::vector<SampleInfo> samples, TransformOptions transforms, LoaderOptions options, SampleHook hook)
    : samples_(std::move(samples)), transform_(std::move(transforms)), opt_(options), hook_(std::move(hook)) {
  if (opt_.batch_size < 1) throw ConfigError("loader.batch_size must be >= 1");
  if (opt_.num_workers < 0) throw ConfigError("loader.num_workers must be >= 0");
  if (opt_.prefetch < 1) throw ConfigError("loader.prefetch must be >= 1");
  if (opt_.sampler != "all" && opt_.sampler != "balanced" && opt_.sampler != "balanced_frequency")
    throw ConfigError("loader.sampler: unknown sampler '" + opt_.sampler + "' (all, balanced, balanced_frequency)");
  if (opt_.cache) cache_.resize(samples_.size());
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::num_batches() const {
  const int64_t n = static_cast<int64_t>(epoch_samples(0).size()), b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<std::size_t> Loader::epoch_samples(int64_t epoch) const {
  std::vector<std::size_t> all(samples_.size());
  std::iota(all.begin(), all.end(), 0);
  if (opt_.sampler == "all") return all;
  std::vector<std::size_t> pos, neg;
  for (std::size_t i = 0; i < samples_.size(); ++i) (samples_[i].label != 0 ? pos : neg).push_back(i);
  if (pos.empty() || neg.empty()) return all;
  // mixed-segdec-net data/dataset.py __getitem__: an epoch is every positive plus one negative per
  // positive. The first epoch (and every epoch of "balanced") takes them from a fresh permutation;
  // "balanced_frequency" then draws without replacement with probabilities
  //   q = 1 - freq / max(freq);  q = q - median(q) + 1;  q = q^(4 ln n);  normalised,
  // freq counting how often each negative was drawn in the earlier epochs.
  const std::size_t n = neg.size(), m = pos.size();
  std::vector<double> freq(n, 0.0);
  std::vector<std::size_t> chosen;
  const int64_t first = opt_.sampler == "balanced_frequency" ? 0 : epoch;
  for (int64_t e = first; e <= epoch; ++e) {
    std::mt19937_64 g(data_detail::mix_seed(opt_.seed, "loader/negatives", static_cast<uint64_t>(e)));
    chosen.clear();
    const double fmax = *std::max_element(freq.begin(), freq.end());
    if (e == 0 || opt_.sampler == "balanced" || fmax <= 0) {
      std::vector<std::size_t> perm(n);
      std::iota(perm.begin(), perm.end(), 0);
      data_detail::stable_shuffle(perm, g);
      for (std::size_t k = 0; k < m; ++k) chosen.push_back(perm[k % n]);
    } else {
      std::vector<double> q(n);
      for (std::size_t i = 0; i < n; ++i) q[i] = 1.0 - freq[i] / fmax;
      std::vector<double> sorted = q;
      std::sort(sorted.begin(), sorted.end());
      const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
      const double power = std::log(static_cast<double>(n)) * 4.0;
      for (auto& x : q) x = std::pow(x - median + 1.0, power);
      // Successive draws from the remaining weights: numpy's choice(replace=False, p=q). More
      // positives than negatives: the negatives are used up and drawn again.
      std::vector<double> w = q;
      std::uniform_real_distribution<double> u(0.0, 1.0);
      for (std::size_t k = 0; k < m; ++k) {
        if (k % n == 0 && k > 0) w = q;
        double total = 0;
        for (double x : w) total += x;
        std::size_t pick = n;
        if (total > 0) {
          double r = u(g) * total;
          for (std::size_t i = 0; i < n; ++i) {
            if (w[i] <= 0) continue;
            pick = i;
            if (r < w[i]) break;
            r -= w[i];
          }
        } else {  // every remaining weight underflowed: the first unused one
          for (std::size_t i = 0; i < n && pick == n; ++i)
            if (std::find(chosen.begin() + static_cast<std::ptrdiff_t>(k - k % n), chosen.end(), i) == chosen.end())
              pick = i;
        }
        chosen.push_back(pick);
        w[pick] = 0;
      }
    }
    for (std::size_t i : chosen) freq[i] += 1;
  }
  std::vector<std::size_t> out = pos;
  for (std::size_t i : chosen) out.push_back(neg[i]);
  return out;
}

std::vector<std::vector<std::size_t>> Loader::epoch_plan(int64_t epoch) const {
  std::vector<std::size_t> order = epoch_samples(epoch);
  if (opt_.shuffle) {
    std::mt19937_64 g(data_detail::mix_seed(opt_.seed, "loader/order", static_cast<uint64_t>(epoch)));
    data_detail::stable_shuffle(order, g);
  }
  std::vector<std::vector<std::size_t>> plan;
  const std::size_t b = static_cast<std::size_t>(opt_.batch_size);
  for (std::size_t i = 0; i < order.size(); i += b) {
    const std::size_t end = std::min(order.size(), i + b);
    if (opt_.drop_last && end - i < b) break;
    plan.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(i), order.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return plan;
}

Sample Loader::load(std::size_t index, int64_t epoch) {
  if (index >= samples_.size())
    throw Error("sample index " + std::to_string(index) + " out of range (" + std::to_string(samples_.size()) + ")");
  const SampleInfo& info = samples_[index];
  DecodedImage d;
  std::shared_ptr<const DecodedImage> cached;
  if (opt_.cache) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    cached = cache_[index];
  }
  if (cached) {
    d.image = cached->image.clone();
    d.mask = cached->mask.clone();
    d.has_mask = cached->has_mask;
  } else {
    d = transform_.decode(info);
    transform_.resize_crop(d);
    if (opt_.cache) {
      auto keep = std::make_shared<DecodedImage>(DecodedImage{d.image.clone(), d.mask.clone(), d.has_mask});
      std::lock_guard<std::mutex> lock(cache_mu_);
      cache_[index] = std::move(keep);
    }
  }
  std::mt19937_64 g(data_detail::mix_seed(opt_.seed, "loader/sample/" + std::to_string(epoch), index));
  if (opt_.augment) transform_.augment(d, g);
  Sample s = transform_.to_sample(d, info);
  if (hook_) {
    ScopedStage stage("load_sample_hook");  // an anomaly synthesizer, usually
    std::mt19937_64 hg(data_detail::mix_seed(opt_.seed, "loader/hook/" + std::to_string(epoch), index));
    try {
      hook_(s, hg);
    } catch (const std::exception& e) {
      throw Error("sample hook failed on " + info.path + ": " + e.what());
    }
  }
  transform_.normalize(s);
  return s;
}

Batch Loader::make_batch(const std::vector<std::size_t>& indices, int64_t epoch) {
  ScopedStage stage("load_batch");
  std::vector<Sample> v;
  v.reserve(indices.size());
  for (std::size_t i : indices) v.push_back(load(i, epoch));
  return collate(std::move(v));
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  consumed_.notify_all();
  produced_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  ready_.clear();
  failed_.clear();
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop_workers();
  {
    std::lock_guard<std::mutex> lock(mu_);
    plan_ = epoch_plan(epoch);
    epoch_ = epoch;
    const std::size_t skip = std::min(plan_.size(), static_cast<std::size_t>(std::max<int64_t>(0, first_batch)));
    next_to_build_ = skip;
    next_to_return_ = skip;
    started_ = true;
  }
  for (int i = 0; i < opt_.num_workers; ++i)
    workers_.emplace_back([this, i] {
      Trace::name_thread("loader worker " + std::to_string(i + 1));
      worker_loop();
    });
}

void Loader::worker_loop() {
  for (;;) {
    std::size_t b;
    int64_t epoch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      consumed_.wait(lock, [&] {
        return stopping_ || next_to_build_ >= plan_.size() ||
               next_to_build_ < next_to_return_ + static_cast<std::size_t>(opt_.prefetch);
      });
      if (stopping_ || next_to_build_ >= plan_.size()) return;
      b = next_to_build_++;
      epoch = epoch_;
    }
    std::optional<Batch> batch;
    std::exception_ptr err;
    try {
      batch = make_batch(plan_[b], epoch);
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (err) failed_[b] = err;
      else ready_[b] = std::move(*batch);
    }
    produced_.notify_all();
  }
}

std::optional<Batch> Loader::next() {
  if (!started_) start_epoch(0);
  if (opt_.num_workers == 0) {
    if (next_to_return_ >= plan_.size()) return std::nullopt;
    return make_batch(plan_[next_to_return_++], epoch_);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (next_to_return_ >= plan_.size()) return std::nullopt;
  const std::size_t b = next_to_return_;
  produced_.wait(lock, [&] { return ready_.count(b) || failed_.count(b); });
  ++next_to_return_;
  if (auto f = failed_.find(b); f != failed_.end()) {
    std::exception_ptr e = f->second;
    failed_.erase(f);
    lock.unlock();
    consumed_.notify_all();
    std::rethrow_exception(e);
  }
  Batch out = std::move(ready_.at(b));
  ready_.erase(b);
  lock.unlock();
  consumed_.notify_all();
  return out;
}

}  // namespace adfw
