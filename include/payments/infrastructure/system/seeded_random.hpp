#pragma once

#include <payments/domain/random.hpp>

#include <atomic>
#include <cstdint>

namespace payments::infrastructure {

/// SplitMix64 over an atomic counter: lock-free, thread-safe, and the same
/// sequence for the same seed when used from one thread. Not for secrets:
/// it makes ids unique and jitter reproducible, nothing more.
class SeededRandom final : public domain::Random {
public:
    explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
    /// Seeded from std::random_device.
    static std::uint64_t entropy_seed();

    std::uint64_t next_u64() override {
        std::uint64_t z = state_.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed) + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    std::atomic<std::uint64_t> state_;
};

} // namespace payments::infrastructure
