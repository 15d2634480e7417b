#include <payments/domain/ids.hpp>

#include <algorithm>

namespace payments::domain {

bool is_valid_id(std::string_view text) noexcept {
    if (text.empty() || text.size() > 64) return false;
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

std::string generate_id(std::string_view prefix, Random& random) {
    // Lowercase RFC 4648 base32: 13 characters hold 64 bits (the first one only 4).
    static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::string id;
    id.reserve(prefix.size() + 26);
    id.append(prefix);
    for (int word = 0; word < 2; ++word) {
        std::uint64_t bits = random.next_u64();
        for (int i = 12; i >= 0; --i) id.push_back(alphabet[(bits >> (i * 5)) & 31]);
    }
    return id;
}

} // namespace payments::domain
