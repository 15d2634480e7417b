#pragma once
// The PostgresStore's schema, as forward migrations: migrations[n] takes a
// schema from version n to n + 1. A release only ever appends to this list.
// Each runs in a transaction of its own under an advisory lock, so that
// processes starting together migrate once, with no statement timeout (a big
// table's DDL takes what it takes) and a short lock timeout, tried again
// (while a DDL statement waits for its table, every later reader and writer of
// that table waits behind it). An index on a table that may be big is built
// after its migration's transaction, CONCURRENTLY (concurrent_indexes), and
// the version says the migration is done only once it is: such a migration
// must be idempotent (it runs again when the build was interrupted).

#include <array>

namespace payments::infrastructure::postgres {

/// The advisory lock that serialises migrations (any constant of our own),
/// taken for the whole migration by the session that migrates; a release
/// before this one took it per transaction (pg_advisory_xact_lock), on the same key.
inline constexpr char const* migration_lock = "SELECT pg_try_advisory_lock(7463541209785301)";
inline constexpr char const* migration_unlock = "SELECT pg_advisory_unlock(7463541209785301)";

inline constexpr std::array<char const*, 6> migrations = {
    // 0 → 1: the aggregates, the idempotency records, the outbox and the scheduled events.
    R"sql(
CREATE TABLE invoices (
    seq     bigserial UNIQUE,          -- creation order, for paging
    id      text PRIMARY KEY,
    status  bigint NOT NULL,
    version bigint NOT NULL,
    body    bytea NOT NULL             -- the codec's snapshot
);
CREATE INDEX invoices_by_status ON invoices (status, seq);
CREATE TABLE payments (
    id         text PRIMARY KEY,
    invoice_id text NOT NULL,
    attempt    bigint NOT NULL,
    status     bigint NOT NULL,
    version    bigint NOT NULL,
    body       bytea NOT NULL
);
CREATE INDEX payments_by_invoice ON payments (invoice_id, attempt);
CREATE TABLE idempotency (
    scope       text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    owner       text NOT NULL,         -- the store (process) whose request holds or completed it
    claimed_at  bigint NOT NULL,       -- µs since the epoch
    since       bigint,                -- completion time; null while the request runs
    outcome     bytea,                 -- null while the request runs
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_since ON idempotency (since);
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY, -- commit order within an invoice
    event_id    text NOT NULL,
    invoice_id  text NOT NULL,
    occurred_at bigint NOT NULL,
    delivered   boolean NOT NULL DEFAULT false,
    body        bytea NOT NULL
);
CREATE INDEX outbox_by_invoice ON outbox (invoice_id, seq);
CREATE INDEX outbox_undelivered ON outbox (seq) WHERE NOT delivered;
CREATE TABLE scheduled (
    event_id text PRIMARY KEY,
    due      bigint NOT NULL,
    body     bytea NOT NULL
);
)sql",
    // 1 → 2: which process drives which invoice. A process renews its row in
    // `owners`; an invoice's lease is valid while its owner's row is alive.
    R"sql(
CREATE TABLE owners (
    owner       text PRIMARY KEY,
    alive_until timestamptz NOT NULL   -- the server's clock: one clock for every process
);
CREATE TABLE leases (
    invoice_id text PRIMARY KEY,
    owner      text NOT NULL
);
ALTER TABLE scheduled ADD COLUMN invoice_id text NOT NULL DEFAULT '';
)sql",
    // 2 → 3: the lease is a fencing token. Its epoch moves whenever the lease
    // changes owner; a write that drives an invoice commits only while its
    // process still holds the lease at the epoch it took it at.
    R"sql(
ALTER TABLE leases ADD COLUMN epoch bigint NOT NULL DEFAULT 1;
-- The last batch each process committed, written in the batch's own
-- transaction: a COMMIT whose reply was lost is looked up here.
CREATE TABLE commits (
    owner text PRIMARY KEY,
    batch bigint NOT NULL
);
)sql",
    // 3 → 4: each outbox and scheduled row names the process that delivers
    // it: the one that committed it, or the one that took it over once that
    // process was gone (its row in `owners` lapsed or removed). Rows written
    // before have no owner: the first process to look takes them over.
    R"sql(
ALTER TABLE outbox ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE scheduled ADD COLUMN owner text NOT NULL DEFAULT '';
DROP INDEX outbox_undelivered;
CREATE INDEX outbox_undelivered ON outbox (owner, seq) WHERE NOT delivered;
CREATE INDEX scheduled_by_owner ON scheduled (owner, due);
)sql",
    // 4 → 5: the attempts a janitor's round can act on (REQUESTED 0, UNKNOWN
    // 3: payments_open, in concurrent_indexes) and each invoice's attempt
    // under review, so that a round reads only those (review 16, B3). Rows
    // written before have no attempt under review: they are read until their
    // next write. A constant default: no table rewrite.
    R"sql(
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS review_of text NOT NULL DEFAULT '';
)sql",
    // 5 → 6: each scheduled row numbered in the order it was written, so that
    // the relay's start pages only the rows there when it began (review 21,
    // F2). The table holds only retries not yet delivered. Metadata only
    // (review 22, G1): a column with no default and a default set afterwards
    // rewrite no row (`bigserial`, a volatile default, would rewrite the table
    // under ACCESS EXCLUSIVE). The rows already there keep a NULL number: they
    // predate every mark, and the start's page counts them as 0.
    R"sql(
CREATE SEQUENCE scheduled_seq_seq;
ALTER TABLE scheduled ADD COLUMN seq bigint;
ALTER TABLE scheduled ALTER COLUMN seq SET DEFAULT nextval('scheduled_seq_seq');
ALTER SEQUENCE scheduled_seq_seq OWNED BY scheduled.seq;
)sql",
};

/// An index that the migration to `version` builds after its transaction,
/// with CREATE INDEX CONCURRENTLY (which locks no writer out while it scans
/// a big table), before schema_version says `version`.
struct ConcurrentIndex {
    int version;
    char const* name;
    char const* definition; // what follows CREATE INDEX CONCURRENTLY IF NOT EXISTS <name>
};

inline constexpr std::array<ConcurrentIndex, 1> concurrent_indexes = {{
    {5, "payments_open", "ON payments (id) WHERE status IN (0, 3)"},
}};

} // namespace payments::infrastructure::postgres
