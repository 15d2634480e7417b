#pragma once

#include <payments/domain/payment.hpp>
#include <payments/domain/time.hpp>
#include <payments/error.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace payments::application {

/// A client's Idempotency-Key, scoped to the client (scope may be empty).
/// Only make() builds one, so every key holds its invariants.
class IdempotencyKey {
public:
    static constexpr std::size_t max_size = 255;

    /// The key must be 1..255 printable ASCII characters; the scope at most 255.
    static Result<IdempotencyKey> make(std::string scope, std::string key);

    std::string const& scope() const noexcept { return scope_; }
    std::string const& key() const noexcept { return key_; }

    friend bool operator==(IdempotencyKey const&, IdempotencyKey const&) = default;

private:
    IdempotencyKey(std::string scope, std::string key) : scope_(std::move(scope)), key_(std::move(key)) {}

    std::string scope_;
    std::string key_;
};

/// What a first request produced, replayed to every repeat of it.
using PaymentResult = Result<domain::Payment>;

/// The answer to "may I run this request?".
struct IdempotencyClaim {
    /// What the caller may do with the key.
    enum class State {
        claimed,  ///< first use: run the request, then complete() or release()
        replay,   ///< done before with the same request: return `stored`
        in_use,   ///< the first request with this key is still running
        mismatch, ///< the key was used for a different request
    };

    State state;
    std::optional<PaymentResult> stored;
};

/// Remembers the outcome of each idempotent request for a time (Stripe and
/// the IETF Idempotency-Key draft semantics). Thread-safe.
class IdempotencyStore {
public:
    virtual ~IdempotencyStore() = default;

    /// Atomically claims the key for a request with this fingerprint.
    virtual IdempotencyClaim claim(IdempotencyKey const& key, std::string_view fingerprint,
                                   domain::Timestamp now) = 0;
    /// Stores the outcome of a claimed key for replay.
    virtual void complete(IdempotencyKey const& key, PaymentResult outcome, domain::Timestamp now) = 0;
    /// Forgets a claimed key whose request ended without a replayable outcome.
    virtual void release(IdempotencyKey const& key) = 0;
    /// Drops records older than the time to live; returns how many.
    virtual std::size_t purge_expired(domain::Timestamp now) = 0;
};

} // namespace payments::application

/// Hashes a key with its scope, for unordered containers.
template <>
struct std::hash<payments::application::IdempotencyKey> {
    std::size_t operator()(payments::application::IdempotencyKey const& k) const noexcept {
        std::size_t const h = std::hash<std::string>{}(k.scope());
        return h ^ (std::hash<std::string>{}(k.key()) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    }
};
