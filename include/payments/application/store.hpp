#pragma once

#include <payments/application/idempotency_store.hpp>
#include <payments/domain/events.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/payment.hpp>
#include <payments/error.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
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

/// An attempt a janitor's round may act on, with its invoice (Store::open_attempts()).
struct OpenAttempt {
    domain::Invoice invoice;
    domain::Payment payment;
};

/// One page of Store::open_attempts(), in payment id order.
struct OpenAttemptPage {
    std::vector<OpenAttempt> data;
    std::optional<domain::PaymentId> next; ///< pass as `after` for the next page; none after the last page
};

/// An event to deliver at a later time (a retry), kept until it is delivered.
struct ScheduledEvent {
    domain::Event event;
    domain::Timestamp at;
};

/// Where a page of the outbox starts: after the row `after` (none: the first
/// row), up to the row `through` (none: the last). The store sets `through`
/// on the first page to the last row it then held, so that the pages of one
/// pass leave out the events committed meanwhile (their use case publishes them).
struct OutboxCursor {
    std::optional<std::uint64_t> after;
    std::optional<std::uint64_t> through;
};

/// One page of Store::undelivered_page(), oldest first.
struct OutboxPage {
    std::vector<domain::Event> events;
    std::optional<OutboxCursor> next; ///< the next page's cursor; none after the last page
};

/// Where a page of the scheduled events starts: after the row at (time,
/// id) `after`, in that order (none: the first), among the rows up to the
/// one numbered `through` in the order they were written (none: the last).
/// The store sets `through` on the first page to the last row it then held,
/// so that the pages of one pass leave out the retries committed meanwhile:
/// their use case arms them (review 21, F2).
struct ScheduledCursor {
    /// A scheduled row's place in a pass: its time, then its event id.
    struct Key {
        domain::Timestamp at;
        domain::EventId id;
    };
    std::optional<Key> after;
    std::optional<std::uint64_t> through;
};

/// Where a start's passes end (Store::start_mark()): the last outbox row and
/// the last scheduled row the store held when it opened (none: the last when
/// the pass begins).
struct StartMark {
    std::optional<std::uint64_t> outbox;
    std::optional<std::uint64_t> scheduled;
};

/// One page of Store::scheduled_page(), in order of their time.
struct ScheduledPage {
    std::vector<ScheduledEvent> events;
    std::optional<ScheduledCursor> next; ///< the next page's cursor; none after the last page
};

/// Outbox work that a process which is gone left undelivered, taken over by
/// this one to deliver (Store::take_over()).
struct TakenOver {
    std::vector<domain::Event> events;    ///< oldest first
    std::vector<ScheduledEvent> scheduled; ///< in order of their time
    bool empty() const { return events.empty() && scheduled.empty(); }
};

/// The idempotency record that a commit completes in the same transaction.
struct IdempotencyCompletion {
    IdempotencyKey key;
    PaymentResult outcome;
    domain::Timestamp now;
};

/// One atomic write. Each aggregate carries the version it was loaded at
/// (0 for a new one); the write fails whole if any of them changed since.
/// The events, the scheduled events and the idempotency completion commit
/// with the aggregates (the transactional outbox): an event is published only
/// once its cause is durable, and none is lost if the process dies after.
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
    std::vector<domain::Event> events = {};            ///< published after the commit, in order
    std::vector<ScheduledEvent> scheduled = {};        ///< delivered at their time, after the commit
    std::optional<IdempotencyCompletion> idempotency = {}; ///< kept by a store that is also the IdempotencyStore

    /// Who a commit made with commit_async() (or update_async()) answers: the
    /// engine (a settlement) or a client's command (create, pay: the client
    /// waits for its continuation). A store with a bounded writer queue admits
    /// a client's only while the queue is less than half full, an engine's
    /// while it is less than three quarters full, a synchronous commit up to
    /// the bound: a flood of requests never crowds out the settlements of
    /// charges already made, nor the commits that wait (review 25, F3).
    enum class Origin { engine, client };
    Origin origin = Origin::engine;
};

/// Thrown by a durable store's reads when the storage cannot answer (an I/O
/// error, a record that does not decode): a read never answers "not found"
/// for what it could not read. PaymentService answers it as
/// `storage_unavailable`; the bus retries a handler that throws it.
struct StorageFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Whether an event this process published is still its own to deliver
/// (Store::still_owns()), on a store several processes share.
enum class Ownership {
    owned,    ///< this process's to deliver
    lost,     ///< another process took it over: it delivers it
    doubtful, ///< this process's liveness may have lapsed unseen: not known until its next renewal
};

/// Where invoices and payments live, with the outbox of their events.
/// Thread-safe. A durable implementation commits Changes in one transaction
/// and answers only once it is durable.
class Store {
public:
    virtual ~Store() = default;

    virtual std::optional<domain::Invoice> invoice(domain::InvoiceId const& id) const = 0;
    /// The query's limit is already validated (1..max_limit).
    virtual InvoicePage invoices(InvoiceQuery const& query) const = 0;
    virtual std::optional<domain::Payment> payment(domain::PaymentId const& id) const = 0;
    /// The invoice's attempts in order; empty for an unknown invoice.
    virtual std::vector<domain::Payment> payments_of(domain::InvoiceId const& id) const = 0;
    /// What a janitor's round can act on, without reading anything else
    /// (review16 B3): at most `limit` (1..) attempts REQUESTED or UNKNOWN
    /// whose invoice is PROCESSING or NEEDS_REVIEW, except an UNKNOWN one an
    /// operator has (the invoice's attempt under review), each with its
    /// invoice, in payment id order after `after` (keyset paging). An attempt
    /// may come that is not its invoice's latest; the caller checks. Throws
    /// StorageFailure.
    virtual OpenAttemptPage open_attempts(std::optional<domain::PaymentId> const& after, std::size_t limit) const = 0;

    /// All or nothing: `conflict` if a version moved, `already_exists` if a
    /// new aggregate's id is taken, `storage_unavailable` if it could not be
    /// made durable (then nothing of it is kept).
    virtual Result<void> commit(Changes changes) = 0;

    /// What commit_async() calls with the commit's result.
    using Committed = std::function<void(Result<void>)>;

    /// commit(), without holding the caller's thread until it is durable:
    /// `done` is called exactly once with what commit() would return, after
    /// the transaction that holds the changes is durable (or refused). A
    /// store with a writer thread calls it there: it must be quick, never
    /// block and never throw; it may publish to the bus and post the rest to
    /// a Scheduler, and nothing more: never commit() nor commit_async() (on
    /// PostgreSQL a nested commit_async() waits at the token gate, which a
    /// re-registration may hold until this very batch is answered). If
    /// commit_async() throws, `done` is never called. The default commits
    /// synchronously, then calls `done` on the caller's thread.
    virtual void commit_async(Changes changes, Committed done);

    /// What a step decides on an invoice as it is: the rest of its commit
    /// (new payments, events, the idempotency completion; not the invoice).
    using Decide = std::function<Result<Changes>(domain::Invoice const& invoice)>;
    /// Makes the decided change to the invoice (applies the decided events).
    using Apply = std::function<void(domain::Invoice& invoice, Changes const& decided)>;

    /// One step on one invoice, committed as one: `decide` reads the stored
    /// invoice and returns what else to commit, `apply` then changes the
    /// invoice, written at the version `decide` read. A store may run both on
    /// its own record under its lock (the in-memory store does: no copy out
    /// and back); the default loads a copy and commits it. `not_found` for an
    /// unknown invoice; a refusal of `decide` or of the commit as is. On
    /// success, the events and scheduled events committed, to publish.
    /// Neither function may call the store (it may hold its own lock).
    virtual Result<Changes> update(domain::InvoiceId const& id, Decide const& decide, Apply const& apply);

    /// What update_async() calls with update()'s result.
    using Updated = std::function<void(Result<Changes>)>;

    /// update(), without holding the caller's thread while its commit is made
    /// durable: `done` is called exactly once with what update() would return.
    /// An answer known before anything is committed (`not_found`, a refusal of
    /// `decide`) comes at once, on the caller's thread; a commit's answer where
    /// commit_async() gives it (the same rules for `done`: quick, no commit). The
    /// default reads a copy and decides on the caller's thread, then commit_async();
    /// a store that updates in place under its lock (the in-memory one) answers
    /// update() at once. If update_async() throws, `done` is never called.
    virtual void update_async(domain::InvoiceId const& id, Decide const& decide, Apply const& apply, Updated done);

    /// The outbox, a page at a time: at most `limit` (1..) committed events
    /// whose delivery was not yet recorded, oldest first, from `from` (keyset
    /// paging on the commit order: a page costs the same wherever it is).
    /// After a crash they are published again. A store shared by several
    /// processes answers only this process's own (those it committed or took
    /// over); take_over() hands out those of the others. Throws StorageFailure.
    virtual OutboxPage undelivered_page(OutboxCursor const& from, std::size_t limit) const = 0;
    /// Every page of undelivered_page() at once (tests and tools; the relay pages).
    std::vector<domain::Event> undelivered() const;
    /// Records that the event reached its subscribers (a scheduled event
    /// too: it is then no longer re-armed). Unknown ids are ignored; a
    /// durable store may write it with a later commit.
    virtual void mark_delivered(domain::EventId const& id) = 0;
    /// The bus refused the committed event or scheduled event (it is
    /// stopping): it stays undelivered in the store, for the next start, and
    /// the store forgets what it kept in memory to mark it delivered.
    virtual void left_undelivered(domain::EventId const& /*id*/) {}
    /// Scheduled events not yet delivered, a page at a time: at most `limit`
    /// (1..), in order of their time then id, from `from` (keyset paging,
    /// bounded by the order they were written in). A shared store: this
    /// process's own, as undelivered_page(). Throws StorageFailure.
    virtual ScheduledPage scheduled_page(ScheduledCursor const& from, std::size_t limit) const = 0;
    /// Every page of scheduled_page() at once (tests and tools; the relay pages).
    std::vector<ScheduledEvent> scheduled() const;
    /// Where the relay's start ends its passes: what the store held when it
    /// opened, read then, so that a start whose first read failed does not
    /// republish what this run committed meanwhile (review 21, F6). A store
    /// that cannot fail a read answers none (the last row when a pass begins).
    virtual StartMark start_mark() const { return {}; }
    /// A store shared by several processes: claims for this process the
    /// undelivered events of at most `event_limit` invoices (all of an invoice's
    /// that are there when claimed, never split with a process claiming at
    /// the same time; a row committed later by the gone process's writer may
    /// go to another process) and at most `scheduled_limit` (by row, not by
    /// invoice) scheduled events whose process is gone (killed, cut off past its liveness, or stopped), each
    /// for exactly one of the processes that ask; they are then this
    /// process's to deliver, as if it had committed them, and are marked
    /// delivered through mark_delivered(). Nothing while every owner lives. A
    /// store used by one process answers nothing: restart() republishes what
    /// undelivered() and scheduled() hold. Throws StorageFailure.
    /// A limit of 0 claims none of that kind (the relay's bus has no room
    /// for it: review 21, F4).
    virtual TakenOver take_over(std::size_t /*event_limit*/, std::size_t /*scheduled_limit*/) { return {}; }
    /// take_over() with one limit for both kinds.
    TakenOver take_over(std::size_t limit) { return take_over(limit, limit); }
    /// A store shared by several processes calls `wake` (on a thread of its
    /// own; it must not block) when another process may have left work for
    /// take_over(): a process that stopped or whose liveness lapsed, or the
    /// store's notification channel reconnected. An empty function stops the
    /// calls; once it returns no call is running. False (and `wake` is never
    /// called) for a store used by one process.
    virtual bool watch_work_left(std::function<void()> /*wake*/) { return false; }
    /// Whether an event this process published or armed is still its own to
    /// deliver, asked just before delivery (the relay's delivery filter):
    /// Ownership::lost once another process took it over while this one
    /// stalled past its liveness (the bus drops it rather than deliver it
    /// twice; answered once per such event), Ownership::doubtful while this
    /// process's liveness may have lapsed unseen (the bus holds it back until
    /// a renewal settles it). A store used by one process always says owned.
    virtual Ownership still_owns(domain::EventId const&) { return Ownership::owned; }
    /// The invoice's events in commit order, as far back as the store keeps
    /// them: its audit history.
    virtual std::vector<domain::Event> history(domain::InvoiceId const& id) const = 0;

    /// Takes or keeps this process's lease on the invoice, so that one
    /// process at a time drives its attempts: false while another live
    /// process holds it (its lease lapses when that process stops renewing
    /// it, a kill -9 included). The process that commits an invoice's new
    /// attempt holds its lease. A store used by one process always says yes.
    virtual bool lease(domain::InvoiceId const&) { return true; }
    /// lease(), asked to drive `attempt`, the invoice's latest, before its
    /// charge is sent. A store may answer yes without asking its database,
    /// once per attempt and soon after this process committed it (taking the
    /// lease with it), while nothing it knows of can have moved the lease
    /// (its liveness renewed without a break, no takeover). Another process
    /// committing a newer attempt moves the lease without this one knowing:
    /// that answer rests on the caller having read `attempt` as the latest.
    /// It rests too on this process's clock keeping pace with the database's
    /// (a paused VM breaks it, as it breaks any lease between its answer and
    /// the charge); a later drive of the same attempt asks lease(). A store
    /// whose writer is behind (its queue past what asynchronous commits may
    /// fill) says no: the charge's answer could not be recorded, and the
    /// janitor drives the attempt later (review 23, F2). The default asks lease().
    virtual bool lease_to_drive(domain::InvoiceId const& invoice, domain::PaymentId const& /*attempt*/) {
        return lease(invoice);
    }
    /// True when this process holds the invoice's lease and has held it
    /// without a break since it committed the invoice's latest attempt: no
    /// other process can have driven (sent) that attempt meanwhile. False
    /// after a takeover, by another process or by this one taking the lease
    /// back: whoever held it may have sent the attempt's key. A store used by
    /// one process always says yes.
    virtual bool held_since_attempt(domain::InvoiceId const&) { return true; }
};

} // namespace payments::application
