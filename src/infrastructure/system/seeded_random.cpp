#include <payments/infrastructure/system/seeded_random.hpp>

#include <random>

namespace payments::infrastructure {

std::uint64_t SeededRandom::entropy_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

} // namespace payments::infrastructure
