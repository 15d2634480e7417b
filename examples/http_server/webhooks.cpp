#include "webhooks.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>
#include <optional>
#include <vector>

namespace http_server {

std::string_view to_string(SignatureCheck check) noexcept {
    switch (check) {
    case SignatureCheck::valid: return "valid";
    case SignatureCheck::malformed: return "malformed_signature";
    case SignatureCheck::mismatch: return "bad_signature";
    case SignatureCheck::stale: return "stale_timestamp";
    }
    return "unknown";
}

std::string sign_payload(std::string_view secret, std::int64_t t, std::string_view payload) {
    std::string const signed_text = std::to_string(t) + "." + std::string(payload);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<unsigned char const*>(signed_text.data()), signed_text.size(), digest, &length);
    static constexpr char hex[] = "0123456789abcdef";
    std::string text;
    text.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        text += hex[digest[i] >> 4];
        text += hex[digest[i] & 15];
    }
    return text;
}

SignatureCheck check_signature(std::string_view header, std::string_view payload, std::string_view secret,
                               std::int64_t now_unix, std::chrono::seconds tolerance) {
    std::optional<std::int64_t> t;
    std::vector<std::string_view> signatures;
    // "t=...,v1=...,v1=...,v0=..." : other schemes are ignored, as Stripe's libraries do.
    while (!header.empty()) {
        auto const comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        auto const equals = item.find('=');
        if (equals == std::string_view::npos) return SignatureCheck::malformed;
        std::string_view const key = item.substr(0, equals), value = item.substr(equals + 1);
        if (key == "t") {
            std::int64_t parsed = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
            if (t || ec != std::errc() || end != value.data() + value.size() || value.empty())
                return SignatureCheck::malformed;
            t = parsed;
        } else if (key == "v1") {
            if (signatures.size() >= 8) return SignatureCheck::malformed; // bounded work per request
            signatures.push_back(value);
        }
    }
    if (!t || signatures.empty()) return SignatureCheck::malformed;
    std::string const expected = sign_payload(secret, *t, payload);
    bool matched = false;
    for (std::string_view given : signatures)
        if (given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0)
            matched = true; // no early exit: every candidate is compared
    if (!matched) return SignatureCheck::mismatch;
    // Checked after the signature, so that a forged timestamp is a bad signature.
    std::int64_t const skew = now_unix > *t ? now_unix - *t : *t - now_unix;
    if (skew > tolerance.count()) return SignatureCheck::stale;
    return SignatureCheck::valid;
}

bool SeenEvents::first_time(std::string const& id, std::int64_t now_unix) {
    std::lock_guard lock(mutex_);
    while (!order_.empty() && (order_.front().first + keep_.count() < now_unix || order_.size() >= cap_)) {
        ids_.erase(order_.front().second);
        order_.pop_front();
    }
    if (!ids_.insert(id).second) return false;
    order_.emplace_back(now_unix, id);
    return true;
}

void SeenEvents::forget(std::string const& id) {
    std::lock_guard lock(mutex_);
    // Left in order_: erasing it later from ids_ again is harmless.
    ids_.erase(id);
}

std::size_t SeenEvents::size() const {
    std::lock_guard lock(mutex_);
    return ids_.size();
}

} // namespace http_server
