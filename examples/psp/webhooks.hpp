#pragma once

#include "ledger.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace psp {

/// Where the provider announces final states (docs/psp-protocol.md, "Webhooks").
struct WebhookOptions {
    std::string url;    ///< http://host:port/path; empty: no webhooks
    std::string secret; ///< the shared secret of the Stripe-Signature HMAC
};

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`: the Stripe-Signature header.
std::string stripe_signature(std::string const& secret, std::int64_t t, std::string const& payload);

/// Posts one signed event per intent that reaches a final state, once, on a
/// thread of its own; a late booking is announced when it is booked (in real
/// time). Failures are written to stderr; nothing is delivered again.
class WebhookSender {
public:
    WebhookSender(WebhookOptions options, std::function<std::int64_t()> now_ms);
    /// Stops the thread; events not yet sent are dropped.
    ~WebhookSender();
    WebhookSender(WebhookSender const&) = delete;
    WebhookSender& operator=(WebhookSender const&) = delete;

    void announce(Intent const& intent);

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace psp
