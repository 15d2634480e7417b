#pragma once

#include <payments/domain/invoice.hpp>
#include <payments/domain/payment.hpp>
#include <payments/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace payments::application {

/// A page of invoices, filtered by status, in creation order.
struct InvoiceQuery {
    static constexpr std::size_t max_limit = 1000;

    std::optional<domain::InvoiceStatus> status = {};
    std::optional<domain::InvoiceId> after = {}; ///< the last id of the previous page
    std::size_t limit = 100;
};

/// One page of an InvoiceQuery's answer.
struct InvoicePage {
    std::vector<domain::Invoice> data;
    std::optional<domain::InvoiceId> next; ///< pass as `after` for the next page
};

/// One atomic write. Each aggregate carries the version it was loaded at
/// (0 for a new one); the write fails whole if any of them changed since.
struct Changes {
    /// The invoice to write, and the version it was loaded at.
    struct InvoiceWrite {
        domain::Invoice invoice;
        std::uint64_t expected_version;
    };
    /// A payment to write, and the version it was loaded at.
    struct PaymentWrite {
        domain::Payment payment;
        std::uint64_t expected_version;
    };

    std::optional<InvoiceWrite> invoice;
    std::vector<PaymentWrite> payments;
};

/// Where invoices and payments live. Thread-safe. A durable implementation
/// commits Changes in one transaction (and, later, its outbox with it).
class Store {
public:
    virtual ~Store() = default;

    virtual std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const = 0;
    /// The query's limit is already validated (1..max_limit).
    virtual InvoicePage invoices(InvoiceQuery const& query) const = 0;
    virtual std::optional<domain::Payment> payment(domain::PaymentId const& id) const = 0;
    /// The invoice's attempts in order; empty for an unknown invoice.
    virtual std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const = 0;

    /// All or nothing: `conflict` if a version moved, `already_exists` if a
    /// new aggregate's id is taken.
    virtual Result<void> commit(Changes changes) = 0;
};

} // namespace payments::application
