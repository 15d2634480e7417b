#pragma once

#include <payments/application/idempotency_store.hpp>
#include <payments/application/store.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace payments::infrastructure {

/// Invoices and payments in memory, with all-or-nothing commits. The maps
/// are split into shards, each behind its own mutex, so that commits of
/// different invoices do not wait for each other; a commit locks the shards
/// it touches in one global order.
class InMemoryStore final : public application::Store {
public:
    explicit InMemoryStore(std::size_t shards = 64);
    ~InMemoryStore() override;

    std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const override;
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override;
    std::optional<domain::Payment> payment(domain::PaymentId const& id) const override;
    std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const override;
    Result<void> commit(application::Changes changes) override;

private:
    struct Shard;
    struct Listed;

    template <class Id>
    std::size_t index_of(Id const& id) const;
    Shard& shard_of(domain::InvoiceId const& id) const;
    Shard& shard_of(domain::PaymentId const& id) const;
    Result<void> check_locked(application::Changes const& changes) const;

    std::size_t shard_count_;
    std::unique_ptr<Shard[]> shards_;
    // Creation order, for paging. Lock order: order_mutex_, then shards by index.
    mutable std::mutex order_mutex_;
    std::deque<Listed> order_; // Owned by: order_mutex_
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
        bool released = false;                              // free to claim again
    };

    // When a record was last looked at for expiry. Each record has one entry;
    // records leave the map only through their entry, so the key stays valid.
    struct Expiry {
        domain::Timestamp at;
        application::IdempotencyKey const* key;
    };

    std::size_t purge_locked(domain::Timestamp now);
    // Strictly after the time to live: a key used exactly ttl ago still replays.
    bool expired(Record const& record, domain::Timestamp now) const { return record.since + ttl_ < now; }

    domain::Duration ttl_;
    mutable std::mutex mutex_;
    std::unordered_map<application::IdempotencyKey, Record> records_; // Owned by: mutex_
    std::deque<Expiry> expiry_;                                         // Owned by: mutex_; oldest first
};

} // namespace payments::infrastructure
