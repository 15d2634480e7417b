#pragma once

#include <payments/application/idempotency_store.hpp>
#include <payments/application/store.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace payments::infrastructure {

/// Invoices and payments in memory, with all-or-nothing commits. Reads share
/// a lock; commits take it alone.
class InMemoryStore final : public application::Store {
public:
    std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const override;
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override;
    std::optional<domain::Payment> payment(domain::PaymentId const& id) const override;
    std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const override;
    Result<void> commit(application::Changes changes) override;

private:
    struct InvoiceRecord {
        domain::Invoice invoice;
        std::uint64_t sequence; // creation order, for stable paging
        std::vector<domain::PaymentId> payments;
    };

    Result<void> check_locked(application::Changes const& changes) const;

    mutable std::shared_mutex mutex_;
    std::unordered_map<domain::InvoiceId, InvoiceRecord> invoices_;   // Owned by: mutex_
    std::map<std::uint64_t, domain::InvoiceId> creation_order_;       // Owned by: mutex_
    std::unordered_map<domain::PaymentId, domain::Payment> payments_; // Owned by: mutex_
    std::uint64_t next_sequence_ = 1;                                 // Owned by: mutex_
};

/// Idempotency records in memory, forgotten `ttl` after completion (24 h by default).
class InMemoryIdempotencyStore final : public application::IdempotencyStore {
public:
    explicit InMemoryIdempotencyStore(domain::Duration ttl = std::chrono::hours(24));

    application::IdempotencyClaim claim(application::IdempotencyKey const& key, std::string_view fingerprint,
                                        domain::Timestamp now) override;
    void complete(application::IdempotencyKey const& key, application::PaymentOutcome outcome,
                  domain::Timestamp now) override;
    void release(application::IdempotencyKey const& key) override;
    std::size_t purge_expired(domain::Timestamp now) override;
    std::size_t size() const;

private:
    struct Record {
        std::string fingerprint;
        std::optional<application::PaymentOutcome> outcome; // empty while in use
        domain::Timestamp since;                            // claimed, then completed
    };

    std::size_t purge_locked(domain::Timestamp now);

    domain::Duration ttl_;
    mutable std::mutex mutex_;
    std::unordered_map<application::IdempotencyKey, Record> records_; // Owned by: mutex_
    std::uint64_t claims_since_purge_ = 0;                             // Owned by: mutex_
};

} // namespace payments::infrastructure
