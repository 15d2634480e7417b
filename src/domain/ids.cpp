#include <payments/domain/ids.hpp>

#include <algorithm>
#include <array>

namespace payments::domain {

namespace {

// Which bytes an id may hold: [A-Za-z0-9_-].
constexpr std::array<bool, 256> id_characters = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 256; ++c)
        table[static_cast<std::size_t>(c)] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                             (c >= '0' && c <= '9') || c == '_' || c == '-';
    return table;
}();

} // namespace

bool is_valid_id(std::string_view text) noexcept {
    if (text.empty() || text.size() > 64) return false;
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return id_characters[static_cast<unsigned char>(c)]; });
}

std::string_view generate_id(std::string_view prefix, Random& random, char* out) {
    // Lowercase RFC 4648 base32: 13 characters hold 64 bits (the first one only 4).
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::size_t const size = std::min(prefix.size(), max_generated_id - 26);
    char* p = std::copy_n(prefix.data(), size, out);
    for (int word = 0; word < 2; ++word) {
        std::uint64_t bits = random.next_u64();
        for (int i = 12; i >= 0; --i) *p++ = alphabet[(bits >> (i * 5)) & 31];
    }
    return {out, static_cast<std::size_t>(p - out)};
}

} // namespace payments::domain
