#pragma once

#include <payments/application/idempotency_store.hpp>
#include <payments/application/store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace payments::infrastructure {

/// How a SqliteStore keeps its file.
struct SqliteStoreOptions {
    /// The database file; its directory must exist. A lock file `<path>.lock`
    /// beside it keeps a second process out.
    std::string path = "payments.db";
    /// true (default): synchronous=FULL, a commit is on disk before it is
    /// answered. false: synchronous=NORMAL, which in WAL mode never corrupts
    /// the file but may lose the last commits on a power loss or an OS crash
    /// (not on a process crash): answers already given may be forgotten.
    bool fsync_every_commit = true;
    /// true (default): one writer thread commits every queued command in one
    /// transaction and one fsync (a savepoint each). false: one per command.
    bool group_commit = true;
    /// Commands in one transaction at most.
    std::size_t max_batch = 1024;
    /// Commands waiting for the writer at most (0: no limit); past it a
    /// command fails `storage_unavailable` at once instead of queueing.
    /// Asynchronous commits (settlements, which are decided again later) are
    /// refused past three quarters of it (at least one place is kept once it
    /// is two or more): the rest is kept for requests. From that share on, no
    /// new charge starts (lease_to_drive() says no; the janitor drives it later).
    std::size_t max_queued = 16 * 1024;
    /// Idempotency records are replayed for this long after completion.
    domain::Duration idempotency_ttl = std::chrono::hours(24);
    /// Delivered events are kept as the invoices' history this long (and the newest
    /// row of the outbox whatever its age); empty: for ever.
    std::optional<domain::Duration> event_retention = std::nullopt;
    /// SQLite's page cache per connection, in KiB.
    std::size_t cache_kib = 8 * 1024;
    /// Invoices, and as many payments, kept decoded after their commit (the
    /// least recently used leave first): the commands that follow a write
    /// read them without a read transaction. 0: every read goes to the file.
    std::size_t cached_aggregates = 16 * 1024;
    /// Read connections at most (reads run in parallel with the writer).
    std::size_t readers = 8;
    /// An SQLite VFS by name (empty: the default); tests inject faults with one.
    std::string vfs = {};
};

/// Where SQLite's check of the whole file (quick_check, run on a thread of its
/// own after open) stands.
enum class IntegrityCheck {
    running,    ///< Writes are taken meanwhile.
    passed,
    damaged,    ///< Failed twice, a moment apart: writes are refused until a restart on a repaired file.
    not_run,    ///< Interrupted by close.
};

/// Invoices, payments, idempotency records, the outbox of events and the
/// scheduled events in one SQLite file, in WAL mode. Every commit is durable
/// before it is answered; concurrent commits share a transaction and an fsync
/// (group commit), each in a savepoint, so that one command's conflict does
/// not abort the others. Thread-safe. One process at a time: a second opener
/// is refused.
class SqliteStore final : public application::Store, public application::IdempotencyStore {
public:
    /// The schema this release writes; older files are migrated forward at
    /// open, newer ones refused.
    static constexpr int schema_version = 5;

    /// Opens (or creates) the file, checks its integrity, migrates its schema
    /// and takes the lock. `storage_unavailable` with a clear detail when the
    /// directory is missing, the file is not a database, its schema is newer,
    /// it fails the check or another process holds it.
    static Result<std::unique_ptr<SqliteStore>> open(SqliteStoreOptions options);
    ~SqliteStore() override;

    std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const override;
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override;
    std::optional<domain::Payment> payment(domain::PaymentId const& id) const override;
    std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const override;
    application::OpenAttemptPage open_attempts(std::optional<domain::PaymentId> const& after,
                                               std::size_t limit) const override;
    Result<void> commit(application::Changes changes) override;
    /// Queued for the writer; `done` runs on the writer thread once the
    /// batch that holds it is durable (or at once, on the caller's, when the
    /// store refuses it before queueing).
    void commit_async(application::Changes changes, Committed done) override;
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override;
    void mark_delivered(domain::EventId const& id) override;
    void left_undelivered(domain::EventId const& id) override;
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override;
    application::StartMark start_mark() const override;
    std::vector<domain::Event> history(domain::InvoiceId const& id) const override;
    /// No while the writer is behind, its queue at or past the share that
    /// settlements may fill: their answers could not be recorded (review 23,
    /// F2); the janitor drives the attempt later. Yes otherwise (one process).
    bool lease_to_drive(domain::InvoiceId const& invoice, domain::PaymentId const& attempt) override;

    application::IdempotencyClaim claim(application::IdempotencyKey const& key, std::string_view fingerprint,
                                        domain::Timestamp now) override;
    void complete(application::IdempotencyKey const& key, application::PaymentResult outcome,
                  domain::Timestamp now) override;
    void release(application::IdempotencyKey const& key) override;
    std::size_t purge_expired(domain::Timestamp now) override;

    /// True while a commit whose fsync failed waits for its seal (its
    /// outcome not decided yet): every write is refused meanwhile, and
    /// Engine::store_writable() says no.
    bool sealing() const;
    /// Invoices in the file.
    std::size_t invoice_count() const;
    /// Committed events and scheduled events whose delivery it waits to
    /// record (what it keeps in memory for the outbox).
    std::size_t awaiting_delivery() const;
    /// Payment attempts in the file.
    std::size_t payment_count() const;
    /// Commands waiting for the writer now, not yet taken into a transaction.
    std::size_t queued() const;
    /// Transactions committed, and commands they held: their ratio is the
    /// group commit's batch size.
    std::uint64_t transactions() const;
    std::uint64_t commands() const;
    /// Writes that SQLite refused (disk full, I/O error, read-only), and
    /// integrity checks that failed.
    std::uint64_t storage_errors() const;
    /// Where the integrity check started at open stands.
    IntegrityCheck integrity() const;
    /// Writes recorded deliveries and closes the file (also done by the destructor).
    void close();

private:
    struct Impl;
    struct PendingCommit;
    std::shared_ptr<PendingCommit> prepare_commit(application::Changes changes);
    Result<void> committed(PendingCommit& pending, Result<void> result);
    explicit SqliteStore(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
