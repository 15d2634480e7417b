#pragma once
// Signed provider notices (webhooks): the Stripe-Signature check and the
// memory of event ids already taken.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace http_server {

/// How POST /webhooks/psp checks what it is sent.
struct WebhookOptions {
    /// The shared secret the provider signs with; empty turns the route off (404).
    std::string secret = {};
    /// A signature's timestamp may be this far from now, either way.
    std::chrono::seconds tolerance{300};
    /// Event ids remembered at most, to ignore replays; the oldest go first.
    std::size_t remembered_events = 100'000;
};

/// Why a notice was refused; the `reason` label of webhooks_rejected_total.
enum class SignatureCheck { valid, malformed, mismatch, stale };

/// "valid", "malformed_signature", "bad_signature", "stale_timestamp".
std::string_view to_string(SignatureCheck check) noexcept;

/// Checks a `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`
/// header: some v1 must be HMAC-SHA256(secret, "<t>.<payload>") in hex
/// (several are sent while the provider rotates its secret), compared in
/// constant time, and `t` within `tolerance` of `now_unix`.
SignatureCheck check_signature(std::string_view header, std::string_view payload, std::string_view secret,
                               std::int64_t now_unix, std::chrono::seconds tolerance);

/// The hex HMAC-SHA256 of "<t>.<payload>": what a provider puts in v1.
std::string sign_payload(std::string_view secret, std::int64_t t, std::string_view payload);

/// Event ids seen within the tolerance. An id older than that need not be
/// remembered: its signature's timestamp is refused as stale. At the cap the
/// oldest id is forgotten first (a replay of it would settle nothing new:
/// settlement is idempotent).
/// Threads: any; behind a mutex.
class SeenEvents {
public:
    SeenEvents(std::size_t cap, std::chrono::seconds keep) : cap_(cap), keep_(keep) {}

    /// True the first time `id` is seen (within `keep` of now); false for a replay.
    bool first_time(std::string const& id, std::int64_t now_unix);

    /// Forgets `id`: its notice was not taken after all, and may come again.
    void forget(std::string const& id);

    std::size_t size() const;

private:
    std::size_t const cap_;
    std::chrono::seconds const keep_;
    mutable std::mutex mutex_;
    std::unordered_set<std::string> ids_;                 // Owned by: mutex_
    std::deque<std::pair<std::int64_t, std::string>> order_; // Owned by: mutex_; oldest first
};

} // namespace http_server
