#pragma once

#include <payments/application/ports.hpp>

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

/// The outcome of a payment request, and whether it is a replay of an earlier one.
struct PaymentRequestOutcome {
    PaymentOutcome result;
    bool replayed = false;
};

/// The library's use cases: commands load an aggregate, decide, commit, then
/// publish; queries read the store. Thread-safe.
class PaymentService {
public:
    explicit PaymentService(Ports ports);

    Result<domain::Invoice> create_invoice(CreateInvoice command);
    PaymentRequestOutcome request_payment(RequestPayment const& command);

    Result<domain::Invoice> invoice(domain::InvoiceId const& id) const;
    Result<InvoicePage> invoices(InvoiceQuery const& query) const;
    /// not_found for an unknown invoice.
    Result<std::vector<domain::Payment>> payments_of(domain::InvoiceId const& id) const;
    Result<domain::Payment> payment(domain::PaymentId const& id) const;

private:
    PaymentOutcome request_payment_once(RequestPayment const& command, domain::CorrelationId const& correlation_id);
    domain::CorrelationId correlation(domain::CorrelationId const& given) const;

    Ports ports_;
};

} // namespace payments::application
