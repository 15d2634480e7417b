#include <payments/application/idempotency_store.hpp>

#include <algorithm>

namespace payments::application {

Result<IdempotencyKey> IdempotencyKey::make(std::string scope, std::string key) {
    auto printable = [](std::string const& s) {
        return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
    };
    if (key.empty() || key.size() > max_size || !printable(key))
        return reject(ErrorCode::invalid_argument, "idempotency key must be 1-255 printable ASCII characters");
    if (scope.size() > max_size || !printable(scope))
        return reject(ErrorCode::invalid_argument, "idempotency scope must be at most 255 printable ASCII characters");
    return IdempotencyKey{std::move(scope), std::move(key)};
}

} // namespace payments::application
