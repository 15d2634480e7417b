#pragma once
// The SqliteStore's schema, as forward migrations: migrations[n] takes a file
// from user_version n to n + 1. A release only ever appends to this list.

#include <array>

namespace payments::infrastructure::sqlite {

inline constexpr std::array<char const*, 5> migrations = {
    // 0 → 1: the aggregates and the idempotency records.
    R"sql(
CREATE TABLE invoices (
    seq     INTEGER PRIMARY KEY,       -- creation order, for paging
    id      TEXT NOT NULL UNIQUE,
    status  INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body    BLOB NOT NULL              -- the codec's snapshot
);
CREATE INDEX invoices_by_status ON invoices (status, seq);
CREATE TABLE payments (
    id         TEXT PRIMARY KEY,
    invoice_id TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    status     INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX payments_by_invoice ON payments (invoice_id, attempt);
CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    since       INTEGER NOT NULL,      -- completion time, µs since the epoch
    outcome     BLOB NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_since ON idempotency (since);
)sql",
    // 1 → 2: the outbox (the invoices' history) and the scheduled events.
    R"sql(
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY,   -- commit order
    event_id    TEXT NOT NULL,
    invoice_id  TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    body        BLOB NOT NULL
);
CREATE INDEX outbox_by_invoice ON outbox (invoice_id, seq);
CREATE INDEX outbox_undelivered ON outbox (seq) WHERE delivered = 0;
CREATE TABLE scheduled (
    event_id TEXT PRIMARY KEY,
    due      INTEGER NOT NULL,
    body     BLOB NOT NULL
);
)sql",
    // 2 → 3: the row a COMMIT in doubt is sealed with (a later durable commit
    // that overwrites its WAL frames), and an index for the history's retention.
    R"sql(
CREATE TABLE seal (n INTEGER NOT NULL);
INSERT INTO seal VALUES (0);
CREATE INDEX outbox_delivered_by_time ON outbox (occurred_at) WHERE delivered = 1;
)sql",
    // 3 → 4: the scheduled events in the order the relay pages them at start;
    // the attempts a janitor's round can act on (REQUESTED 0, UNKNOWN 3) and
    // each invoice's attempt under review, so that a round reads only those.
    // Rows written before have no attempt under review: they are read until
    // their next write.
    R"sql(
CREATE INDEX scheduled_by_due ON scheduled (due, event_id);
ALTER TABLE invoices ADD COLUMN review_of TEXT NOT NULL DEFAULT '';
CREATE INDEX payments_open ON payments (id) WHERE status IN (0, 3);
)sql",
    // 4 → 5: each scheduled row numbered in the order it was written, never
    // reused (AUTOINCREMENT: a plain rowid comes back once the last row is
    // deleted), so that the relay's start pages only the rows there when it
    // began (review 21, F2). A column with that constraint cannot be added:
    // the table is copied into a new one, in this migration's transaction.
    R"sql(
CREATE TABLE scheduled_numbered (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    due      INTEGER NOT NULL,
    body     BLOB NOT NULL
);
INSERT INTO scheduled_numbered (event_id, due, body) SELECT event_id, due, body FROM scheduled ORDER BY due, event_id;
DROP TABLE scheduled;
ALTER TABLE scheduled_numbered RENAME TO scheduled;
CREATE INDEX scheduled_by_due ON scheduled (due, event_id);
)sql",
};

} // namespace payments::infrastructure::sqlite
