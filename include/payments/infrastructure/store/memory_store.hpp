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
    application::OpenAttemptPage open_attempts(std::optional<domain::PaymentId> const& after,
                                               std::size_t limit) const override;
    Result<void> commit(application::Changes changes) override;
    /// Decides and applies on the stored invoice under its shard's lock: no copy out and back.
    Result<application::Changes> update(domain::InvoiceId const& id, Decide const& decide, Apply const& apply) override;
    /// update(), answered at once on the caller's thread: nothing here waits for a disk.
    void update_async(domain::InvoiceId const& id, Decide const& decide, Apply const& apply, Updated done) override {
        done(update(id, decide, apply));
    }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override;
    void mark_delivered(domain::EventId const& id) override;
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override;
    std::vector<domain::Event> history(domain::InvoiceId const& id) const override;

    /// Invoices stored; in memory they are never dropped (a durable store keeps them on disk).
    std::size_t invoice_count() const;
    /// Payment attempts stored.
    std::size_t payment_count() const;

private:
    struct Shard;
    struct Listed;

    template <class Id>
    std::size_t index_of(Id const& id) const;
    Shard& shard_of(domain::InvoiceId const& id) const;
    Shard& shard_of(domain::PaymentId const& id) const;
    Result<void> check_locked(application::Changes const& changes) const;
    Result<void> check_payments_locked(application::Changes const& changes, domain::InvoiceId const* with) const;
    void write_locked(application::Changes& changes);
    void enqueue(application::Changes& changes, bool keep_events);

    std::size_t shard_count_;
    std::unique_ptr<Shard[]> shards_;
    // Creation order, for paging. Lock order: order_mutex_, then shards by index.
    mutable std::mutex order_mutex_;
    std::deque<Listed> order_; // Owned by: order_mutex_
    // The outbox. In memory nothing survives the process, so it only holds
    // what is on its way to subscribers.
    struct Outbox;
    std::unique_ptr<Outbox> outbox_;
};

/// Idempotency records in memory, forgotten `ttl` after completion (24 h by
/// default), and at most `max_records` of them.
///
/// At the cap, a new key evicts the oldest completed record of the client
/// scope that holds the most completed records (counted in evictions()): a
/// client flooding fresh keys evicts its own, never another client's, while
/// it holds more than they do. Records of requests still running are never
/// evicted; they are bounded by the requests in flight, so the store may
/// exceed the cap by at most that many.
class InMemoryIdempotencyStore final : public application::IdempotencyStore {
public:
    explicit InMemoryIdempotencyStore(domain::Duration ttl = std::chrono::hours(24), std::size_t max_records = 100'000);
    ~InMemoryIdempotencyStore() override;

    application::IdempotencyClaim claim(application::IdempotencyKey const& key, std::string_view fingerprint,
                                        domain::Timestamp now) override;
    void complete(application::IdempotencyKey const& key, application::PaymentResult outcome,
                  domain::Timestamp now) override;
    void release(application::IdempotencyKey const& key) override;
    std::size_t purge_expired(domain::Timestamp now) override;
    std::size_t size() const;
    /// Records evicted at the cap so far.
    std::uint64_t evictions() const;

private:
    struct Record;
    struct Scope;
    struct Records;

    std::size_t purge_locked(domain::Timestamp now);
    void evict_locked();

    domain::Duration ttl_;
    std::size_t max_records_;
    mutable std::mutex mutex_;
    std::unique_ptr<Records> records_; // Owned by: mutex_
};

} // namespace payments::infrastructure
