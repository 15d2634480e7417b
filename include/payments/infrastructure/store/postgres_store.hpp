#pragma once

#include <payments/application/idempotency_store.hpp>
#include <payments/application/store.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace payments::infrastructure {

/// How a PostgresStore reaches its database.
struct PostgresStoreOptions {
    /// A libpq connection URI or conninfo string
    /// (`postgresql://user@host:port/db`). The password may be in it, in
    /// PGPASSWORD or in ~/.pgpass; it is never logged or put in an error.
    std::string uri = "postgresql:///payments";
    /// The schema that holds the tables (created if missing); empty: the
    /// connection's search_path. Tests give each store a schema of its own.
    std::string schema = {};
    /// Connections at most: one writer and `pool_size - 1` readers (at least one).
    std::size_t pool_size = 8;
    /// Every statement (and every wait for a lock) is cancelled after this:
    /// the command fails `storage_unavailable` instead of hanging. It also
    /// bounds a wait for a free reading connection, and (plus as much again,
    /// at least 250 ms) a wait for any answer of a server that stopped
    /// answering: the session is then dropped.
    std::chrono::milliseconds statement_timeout{5'000};
    /// A connection attempt gives up after this (libpq's connect_timeout, whole seconds, at least 1).
    std::chrono::seconds connect_timeout{2};
    /// true (default): one writer commits every queued command in one
    /// transaction (a savepoint each), its statements sent as one pipeline.
    /// false: one transaction per command.
    bool group_commit = true;
    /// Commands in one transaction at most. PostgreSQL keeps 64 subtransaction
    /// ids per backend in shared memory; past that every snapshot of every
    /// session gets slower (suboverflow), hence the default.
    std::size_t max_batch = 64;
    /// Commands waiting for the writer at most (0: no limit); past it (the
    /// writer is behind a slow or unreachable server) a command fails
    /// `storage_unavailable` at once instead of queueing. Asynchronous commits
    /// (settlements) are refused past three quarters of it (at least one place
    /// is kept once it is two or more), and from that share on no new charge
    /// starts (lease_to_drive() says no; the janitor drives it later).
    std::size_t max_queued = 1024;
    /// Idempotency records are replayed for this long after completion.
    domain::Duration idempotency_ttl = std::chrono::hours(24);
    /// A key claimed by a request that never completed (its process died) is
    /// taken over by another request after this.
    domain::Duration idempotency_claim_timeout = std::chrono::seconds(30);
    /// A store renews its process's liveness this often divided by three; a
    /// process silent twice this long (killed, cut off, stalled) loses its
    /// invoices' leases, outbox and retries, and other processes take them
    /// over. One that stalled and wakes finds it out at its next renewal.
    std::chrono::milliseconds lease_timeout{10'000};
    /// Delivered events are kept as the invoices' history this long; empty: for ever.
    std::optional<domain::Duration> event_retention = std::nullopt;
    /// The application_name its sessions show in pg_stat_activity.
    std::string application_name = "payments";

    /// Seams for tests of interleavings two loads or two statements wide;
    /// empty in production. Called by still_owns() between its read of the
    /// liveness and its read of what was lost, and by take_over() between its
    /// claim's COMMIT and recording the claimed rows as this process's.
    std::function<void()> between_ownership_reads = {};
    std::function<void()> after_take_over_commit = {};

    /// `invalid_argument` when the lease timeout is shorter than the
    /// statement timeout (a process waiting on one statement
    /// would lose its invoices while it still drives them). open() checks it.
    Result<void> validate() const;
};

/// Invoices, payments, idempotency records, the outbox of events and the
/// scheduled events in one PostgreSQL schema, shared by every process that
/// opens it. Commits are durable before they are answered; concurrent commits
/// share a transaction (group commit), each in a savepoint, their statements
/// pipelined. Idempotency keys are claimed in the database (INSERT ... ON
/// CONFLICT), so one key makes one payment whichever process gets it.
/// One process at a time drives an invoice's attempts: the one that
/// committed its latest attempt holds its lease while it renews its
/// liveness, and lease() takes over those of a process that died.
/// Each outbox and scheduled row belongs to the process that committed it:
/// undelivered() and scheduled() answer this process's own, and take_over()
/// claims (FOR UPDATE SKIP LOCKED) those of a process that is gone. A store
/// that finds a process's liveness lapsed removes it and NOTIFYs the others
/// (as a clean close does), and watch_work_left() relays that wake-up.
/// PostgreSQL unreachable: commits fail `storage_unavailable`, reads answer
/// nothing, and the next command reconnects. Thread-safe.
class PostgresStore final : public application::Store, public application::IdempotencyStore {
public:
    /// The schema this release writes; older schemas are migrated forward at
    /// open (under an advisory lock), newer ones refused.
    static constexpr int schema_version = 6;

    /// Connects, migrates the schema and prepares the statements.
    /// `storage_unavailable` with a clear detail (never the password) when
    /// the server cannot be reached, refuses the login or holds a newer schema.
    static Result<std::unique_ptr<PostgresStore>> open(PostgresStoreOptions options);
    ~PostgresStore() override;

    std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const override;
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override;
    std::optional<domain::Payment> payment(domain::PaymentId const& id) const override;
    std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const override;
    application::OpenAttemptPage open_attempts(std::optional<domain::PaymentId> const& after,
                                               std::size_t limit) const override;
    /// Refused as storage_unavailable, nothing sent, while this process's
    /// ownership is doubtful (see still_owns()): what it committed would
    /// wait, unbounded, on its bus.
    Result<void> commit(application::Changes changes) override;
    /// Queued for the writer; `done` runs on the writer thread once the
    /// batch that holds it is committed (or at once, on the caller's, when
    /// the store refuses it before queueing).
    void commit_async(application::Changes changes, Committed done) override;
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override;
    void mark_delivered(domain::EventId const& id) override;
    void left_undelivered(domain::EventId const& id) override;
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override;
    application::StartMark start_mark() const override;
    std::vector<domain::Event> history(domain::InvoiceId const& id) const override;
    /// Claims rows of processes whose liveness lapsed or that stopped;
    /// nothing while this process's own ownership is doubtful (see
    /// still_owns()), or its row lapsed: the others may be taking its work.
    using application::Store::take_over;
    application::TakenOver take_over(std::size_t event_limit, std::size_t scheduled_limit) override;
    /// Calls `wake` on a NOTIFY on the schema's channel (payments_work,
    /// suffixed with the schema), and when the listening session reconnects.
    bool watch_work_left(std::function<void()> wake) override;
    /// Lost (once) for an event published or armed before this process
    /// found its registration lapsed (swept or not) and that another process
    /// took over; doubtful for any other while no renewal sent in the last
    /// two thirds of a lease timeout succeeded, or one found the registration
    /// lapsed and registering anew has not succeeded yet (it may have lapsed
    /// unseen: the next renewal tells). One failed renewal alone is not
    /// doubtful: the registration lasts two lease timeouts.
    application::Ownership still_owns(domain::EventId const& id) override;
    /// Takes the lease when it is free, this process's, or its owner's
    /// liveness has lapsed; never while this process's renewals fail.
    bool lease(domain::InvoiceId const& id) override;
    /// No round trip while this process's liveness is sure (renewing()), it
    /// committed `attempt` with the lease, has not re-registered since, and
    /// holds the lease at that epoch still; else lease(). While its
    /// registration lives, no other process can take its leases, and one that
    /// commits a newer attempt makes `attempt` no longer the latest. No while
    /// the writer is behind, its queue at or past the share settlements may
    /// fill (review 23, F2): the janitor drives the attempt later.
    bool lease_to_drive(domain::InvoiceId const& invoice, domain::PaymentId const& attempt) override;
    /// This process holds the lease at the epoch at which it committed the
    /// invoice's latest attempt (no takeover since).
    bool held_since_attempt(domain::InvoiceId const& id) override;

    application::IdempotencyClaim claim(application::IdempotencyKey const& key, std::string_view fingerprint,
                                        domain::Timestamp now) override;
    void complete(application::IdempotencyKey const& key, application::PaymentResult outcome,
                  domain::Timestamp now) override;
    void release(application::IdempotencyKey const& key) override;
    std::size_t purge_expired(domain::Timestamp now) override;

    /// Renews this process's liveness now (a thread does it every
    /// lease_timeout / 3); false when PostgreSQL refused or could not be reached.
    bool renew();
    /// False while this process's liveness renewals fail (or none succeeded
    /// for two thirds of the lease timeout): lease() then says no, so the
    /// processor starts no charge whose lease may lapse under it.
    bool renewing() const;
    /// Times a renewal found this process's registration lapsed or swept (it stalled
    /// past twice its lease timeout and was taken for gone) and registered it
    /// anew: what was taken over meanwhile is no longer its own, the rest is.
    std::uint64_t reregistrations() const;
    /// Commands waiting for the writer now, not yet taken into a batch.
    std::size_t queued() const;
    /// Transactions committed, and commands they held: their ratio is the
    /// group commit's batch size.
    std::uint64_t transactions() const;
    std::uint64_t commands() const;
    /// Writes and reads that failed for a reason of the server or the network.
    std::uint64_t storage_errors() const;
    /// A server setting as this store's sessions see it (SHOW), for
    /// diagnostics and tests; nullopt when PostgreSQL cannot be read.
    std::optional<std::string> setting(std::string const& name) const;
    /// Writes recorded deliveries and closes the connections (also done by the destructor).
    void close();

private:
    struct Impl;
    struct PendingCommit;
    Result<std::shared_ptr<PendingCommit>> prepare_commit(application::Changes changes);
    Result<void> committed(PendingCommit& pending, Result<void> result);
    explicit PostgresStore(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
