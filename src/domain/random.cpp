#include <payments/domain/random.hpp>

namespace payments::domain {

std::uint64_t Random::uniform(std::uint64_t bound) {
    if (bound == UINT64_MAX) return next_u64();
    // Lemire's multiply-shift maps 64 random bits onto [0, bound + 1). The
    // 128-bit product is a GCC/Clang extension, kept out of the public headers.
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::uint64_t>((static_cast<u128>(next_u64()) * (bound + 1)) >> 64);
}

} // namespace payments::domain
