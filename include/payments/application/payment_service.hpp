#pragma once

#include <payments/application/ports.hpp>

#include <atomic>
#include <optional>
#include <string>
#include <vector>

namespace payments::application {

/// Issue an invoice; without an id one is generated.
struct CreateInvoice {
    std::optional<domain::InvoiceId> id = {};
    domain::Money amount;
    std::string description = {};
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// Start paying an invoice; a repeated idempotency key replays the first outcome.
struct RequestPayment {
    domain::InvoiceId invoice_id;
    std::string payment_method = {}; ///< empty: the gateway's default for the customer
    std::optional<IdempotencyKey> idempotency_key = {};
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// An operator's decision on an invoice in NEEDS_REVIEW.
struct ResolveReview {
    domain::InvoiceId invoice_id;
    domain::ReviewDecision decision;
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// The outcome of a payment request, and whether it is a replay of an earlier one.
struct PaymentRequestReply {
    PaymentResult result;
    bool replayed = false;
};

/// The library's use cases: commands load an aggregate, decide, commit, then
/// publish; queries read the store. Thread-safe.
class PaymentService {
public:
    explicit PaymentService(Ports ports);

    /// `unavailable` once stop_accepting() was called; nothing is committed then.
    Result<domain::Invoice> create_invoice(CreateInvoice command);
    /// `unavailable` once stop_accepting() was called, before the key is
    /// claimed or anything is committed.
    PaymentRequestReply request_payment(RequestPayment const& command);

    /// The operator's action on an invoice in NEEDS_REVIEW: "charged, with
    /// reference R" makes it PAID by the attempt under review; "not charged"
    /// makes it FAILED, and payable again. `invalid_state` for any other
    /// status, or for "not charged" when the attempt is recorded as charged.
    Result<domain::Invoice> resolve_review(ResolveReview const& command);

    /// Refuses new commands from now on (shutdown); work already accepted goes on.
    void stop_accepting() noexcept;
    bool accepting() const noexcept;

    Result<domain::Invoice> invoice(domain::InvoiceId const& id) const;
    Result<InvoicePage> invoices(InvoiceQuery const& query) const;
    /// not_found for an unknown invoice.
    Result<std::vector<domain::Payment>> payments_of(domain::InvoiceId const& id) const;
    Result<domain::Payment> payment(domain::PaymentId const& id) const;
    /// The invoice's events in the order they were committed (its audit
    /// history, as far back as the store keeps it); not_found for an unknown invoice.
    Result<std::vector<domain::Event>> history(domain::InvoiceId const& id) const;

private:
    PaymentResult request_payment_once(RequestPayment const& command, domain::CorrelationId const& correlation_id,
                                       IdempotencyKey const* key = nullptr);
    domain::CorrelationId correlation(domain::CorrelationId const& given) const;

    Ports ports_;
    std::atomic<bool> accepting_{true};
};

} // namespace payments::application
