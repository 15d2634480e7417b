#pragma once

#include <payments/domain/events.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/time.hpp>

#include <optional>

namespace payments::application {

/// What the use cases count. Implementations are thread-safe and cheap.
class Metrics {
public:
    virtual ~Metrics() = default;

    virtual void payment_requested() = 0;
    virtual void payment_succeeded() = 0;
    virtual void payment_failed(domain::FailureKind kind) = 0;
    virtual void retry_scheduled() = 0;
    /// A redelivered or duplicated PaymentRequested that did not reach the gateway.
    virtual void duplicate_delivery() = 0;
    /// An invoice entered `to` (from nothing, for a new invoice).
    virtual void invoice_status_changed(std::optional<domain::InvoiceStatus> from, domain::InvoiceStatus to) = 0;
    virtual void gateway_latency(domain::Duration elapsed) = 0;
    /// The gateway was asked what became of an attempt whose outcome was unknown.
    virtual void outcome_verification() = 0;
};

} // namespace payments::application
