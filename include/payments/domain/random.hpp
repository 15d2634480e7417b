#pragma once

#include <cstdint>

namespace payments::domain {

/// A source of random bits, injected so that ids and jitter are reproducible
/// from a seed in tests and simulations. Implementations are thread-safe.
class Random {
public:
    virtual ~Random() = default;
    virtual std::uint64_t next_u64() = 0;

    /// A uniform integer in [0, bound], without modulo bias worth measuring.
    std::uint64_t uniform(std::uint64_t bound);
};

} // namespace payments::domain
