// Seeding: one experiment seed, independent named streams derived from it, so changing how
// much randomness one part uses (e.g. the synthesizer) never reshuffles another (data order).
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace adfw {

/// A 64-bit seed for stream `name` of experiment seed `seed` (SplitMix64 over an FNV-1a hash
/// of the name: stable across platforms and versions).
uint64_t derive_seed(uint64_t seed, const std::string& name);
/// Same, with an extra index (epoch, sample, worker ...).
uint64_t derive_seed(uint64_t seed, const std::string& name, uint64_t index);

/// The named streams every run uses.
struct SeedStreams {
  uint64_t experiment = 0;
  uint64_t init() const { return derive_seed(experiment, "init"); }            ///< weight initialisation
  uint64_t data_order() const { return derive_seed(experiment, "data_order"); }  ///< shuffling
  uint64_t synthesis() const { return derive_seed(experiment, "synthesis"); }    ///< anomaly synthesis
  uint64_t augment() const { return derive_seed(experiment, "augment"); }        ///< transforms
  uint64_t sampling() const { return derive_seed(experiment, "sampling"); }      ///< coresets, subsets
};

}  // namespace adfw
