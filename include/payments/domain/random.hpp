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
    std::uint64_t uniform(std::uint64_t bound) {
        if (bound == UINT64_MAX) return next_u64();
        // Lemire's multiply-shift maps 64 random bits onto [0, bound + 1).
        __extension__ using u128 = unsigned __int128;
        return static_cast<std::uint64_t>((static_cast<u128>(next_u64()) * (bound + 1)) >> 64);
    }
};

} // namespace payments::domain
