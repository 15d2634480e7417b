#include <payments/infrastructure/store/postgres_store.hpp>

#include "encoded_changes.hpp"
#include "group_commit.hpp"
#include "pg_db.hpp"
#include "postgres_schema.hpp"
#include "record_codec.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace payments::infrastructure {

using namespace domain;
using application::Changes;
using application::IdempotencyKey;
using pg::Params;
using pg::Rows;

namespace {

Error storage_error(std::string detail) { return reject(ErrorCode::storage_unavailable, std::move(detail)); }

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

// The statements every connection prepares once.
constexpr pg::Prepared insert_invoice{"insert_invoice",
                                      "INSERT INTO invoices (id, status, version, body, review_of) VALUES ($1, $2, $3, $4, $5) "
                                      "ON CONFLICT (id) DO NOTHING"};
constexpr pg::Prepared update_invoice{
    "update_invoice",
    "UPDATE invoices SET status = $1, version = $2, body = $3, review_of = $6 WHERE id = $4 AND version = $5"};
constexpr pg::Prepared insert_payment{
    "insert_payment", "INSERT INTO payments (id, invoice_id, attempt, status, version, body) "
                      "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"};
constexpr pg::Prepared update_payment{
    "update_payment",
    "UPDATE payments SET status = $1, version = $2, body = $3 WHERE id = $4 AND version = $5 AND invoice_id = $6"};
constexpr pg::Prepared insert_event{
    "insert_event",
    "INSERT INTO outbox (event_id, invoice_id, occurred_at, body, owner) VALUES ($1, $2, $3, $4, $5) RETURNING seq"};
constexpr pg::Prepared schedule_event{
    "schedule_event", "INSERT INTO scheduled (event_id, due, body, invoice_id, owner) VALUES ($1, $2, $3, $4, $5) "
                      "ON CONFLICT (event_id) DO UPDATE SET due = excluded.due, body = excluded.body, owner = excluded.owner"};
// The lease's epoch moves whenever it changes owner: the fencing token.
#define PAYMENTS_LEASE_TAKEN                                                                                       \
    "INSERT INTO leases AS l (invoice_id, owner, epoch) VALUES ($1, $2, 1) ON CONFLICT (invoice_id) DO UPDATE "    \
    "SET owner = excluded.owner, epoch = CASE WHEN l.owner = excluded.owner THEN l.epoch ELSE l.epoch + 1 END "
// The process that commits an invoice's new attempt drives it (the commit is
// fenced when this process held the lease before: see lease_fence).
constexpr pg::Prepared hold_lease{"hold_lease", PAYMENTS_LEASE_TAKEN "RETURNING epoch"};
// Free, ours, or its owner's liveness lapsed (or gone): taken. The owner
// found gone is read on the statement's snapshot (`gone`), and the lease row,
// re-read once locked, must still name it: a re-registration that moved the
// lease to its new token meanwhile (keep_leases, committed after this
// statement's snapshot, whose new owners row that snapshot cannot see) keeps
// it (review 18, A-6).
constexpr pg::Prepared take_lease{
    "take_lease", "WITH gone AS (SELECT x.owner FROM leases x WHERE x.invoice_id = $1 AND NOT EXISTS (SELECT 1 FROM "
                  "owners w WHERE w.owner = x.owner AND w.alive_until >= clock_timestamp())) " PAYMENTS_LEASE_TAKEN
                  "WHERE l.owner = excluded.owner OR l.owner IN (SELECT owner FROM gone) RETURNING epoch"};
#undef PAYMENTS_LEASE_TAKEN
// A write that drives an invoice this process held commits only while it
// still holds the lease at that epoch; the row lock holds a takeover off
// until the transaction ends.
constexpr pg::Prepared lease_fence{
    "lease_fence", "SELECT 1 FROM leases WHERE invoice_id = $1 AND owner = $2 AND epoch = $3 FOR SHARE"};
constexpr pg::Prepared mark_batch{
    "mark_batch", "INSERT INTO commits (owner, batch) VALUES ($1, $2) ON CONFLICT (owner) DO UPDATE SET batch = excluded.batch"};
constexpr pg::Prepared lease_epoch{"lease_epoch", "SELECT epoch FROM leases WHERE invoice_id = $1 AND owner = $2"};
// A process's registration lasts $2 ms (twice its lease timeout: a stall
// shorter than that is no take-over) and is renewed every lease timeout / 3.
constexpr pg::Prepared register_owner{
    "register_owner", "INSERT INTO owners (owner, alive_until) VALUES ($1, clock_timestamp() + $2::bigint * "
                      "interval '1 millisecond') ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until"};
// A renewal touches a live row and never inserts it: no live row means the
// process was taken for gone while it stalled (its row lapsed, swept or not:
// the others take a lapsed owner's work at once), and its work may be
// another's (review 18, A-1).
constexpr pg::Prepared renew_owner{
    "renew_owner", "UPDATE owners SET alive_until = clock_timestamp() + $2::bigint * interval '1 millisecond' "
                   "WHERE owner = $1 AND alive_until >= clock_timestamp()"};
// A re-registration removes the earlier tokens' rows ($1: the old token's,
// lapsed, not yet swept, and those of attempts whose COMMIT reply was lost).
constexpr pg::Prepared forget_owner{"forget_owner", "DELETE FROM owners WHERE owner = ANY($1::text[])"};
// The re-registration's claims: what the earlier tokens ($1) still own,
// nobody having taken it, becomes the new token's ($2). A row another process
// is claiming is waited for and re-checked (a plain column): each goes to one.
// The earlier tokens include those of re-registrations whose COMMIT reply was
// lost (review 18, A-5): their rows are found there. The new token is always
// a fresh one, never such a token revived: it may have lapsed meanwhile, and
// a survivor that listed it as gone would take what it names even after the
// revival (review 20, 9); a fresh token is in nobody's list. Rows are locked in seq order, as take_events
// locks them, so that a survivor claiming an invoice meanwhile gets all of its
// rows or none (review 20, 1): whoever locks its first row first, the other
// waits for and then re-checks every row.
constexpr pg::Prepared keep_events{
    "keep_events", "UPDATE outbox SET owner = $2 WHERE seq IN (SELECT seq FROM outbox WHERE owner = ANY($1::text[]) AND "
                   "NOT delivered ORDER BY seq FOR UPDATE) RETURNING seq"};
constexpr pg::Prepared keep_scheduled{
    "keep_scheduled", "UPDATE scheduled SET owner = $2 WHERE owner = ANY($1::text[]) RETURNING event_id"};
// Leases keep their epoch: nobody held them meanwhile ($3: those this process holds).
constexpr pg::Prepared keep_leases{
    "keep_leases", "UPDATE leases SET owner = $2 WHERE owner = ANY($1::text[]) AND invoice_id = ANY($3::text[])"};
// A clean stop, and a liveness found lapsed: the process's row goes, and the
// others are told ($2: the channel) in the same transaction that their leases,
// outbox and scheduled events are free to take over.
constexpr pg::Prepared drop_owner{
    "drop_owner", "WITH gone AS (DELETE FROM owners WHERE owner = $1 RETURNING 1) SELECT pg_notify($2, 'stopped') FROM gone"};
constexpr pg::Prepared sweep_owners{
    "sweep_owners", "WITH gone AS (DELETE FROM owners WHERE alive_until < clock_timestamp() RETURNING 1) "
                    "SELECT pg_notify($1, 'lapsed') FROM (SELECT 1 FROM gone LIMIT 1) g"};
// A key is completed only by the store that holds its claim (or, the claim
// lost to an outage, by a store that finds no row): a request whose claim
// another process took over cannot complete it.
constexpr pg::Prepared complete_key{
    "complete_key",
    "INSERT INTO idempotency AS i (scope, key, fingerprint, owner, claimed_at, since, outcome) "
    "VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (scope, key) DO UPDATE SET since = excluded.since, "
    "outcome = excluded.outcome WHERE i.owner = excluded.owner AND i.outcome IS NULL"};
// The claim: a new key, a record past its time to live, or a claim abandoned
// (its process died) are taken; anything else is left for look_key to read.
constexpr pg::Prepared claim_key{
    "claim_key",
    "INSERT INTO idempotency AS i (scope, key, fingerprint, owner, claimed_at) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, owner = excluded.owner, "
    "claimed_at = excluded.claimed_at, since = NULL, outcome = NULL "
    "WHERE (i.outcome IS NOT NULL AND i.since < $6) OR (i.outcome IS NULL AND i.claimed_at < $7) RETURNING 1"};
constexpr pg::Prepared look_key{"look_key",
                                "SELECT fingerprint, outcome FROM idempotency WHERE scope = $1 AND key = $2"};
constexpr pg::Prepared release_key{
    "release_key", "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND owner = $3 AND outcome IS NULL"};
constexpr pg::Prepared purge_keys{"purge_keys", "DELETE FROM idempotency WHERE outcome IS NOT NULL AND since < $1"};
constexpr pg::Prepared mark_events{"mark_events", "UPDATE outbox SET delivered = true WHERE seq = ANY($1::bigint[])"};
constexpr pg::Prepared unschedule{"unschedule", "DELETE FROM scheduled WHERE event_id = ANY($1::text[])"};
constexpr pg::Prepared purge_events{"purge_events", "DELETE FROM outbox WHERE delivered AND occurred_at < $1"};
constexpr pg::Prepared select_invoice{"select_invoice", "SELECT body FROM invoices WHERE id = $1"};
constexpr pg::Prepared invoice_seq{"invoice_seq", "SELECT seq FROM invoices WHERE id = $1"};
constexpr pg::Prepared page_all{"page_all", "SELECT body FROM invoices WHERE seq > $1 ORDER BY seq LIMIT $2"};
constexpr pg::Prepared page_status{
    "page_status", "SELECT body FROM invoices WHERE status = $1 AND seq > $2 ORDER BY seq LIMIT $3"};
constexpr pg::Prepared select_payment{"select_payment", "SELECT body FROM payments WHERE id = $1"};
// payments_open holds the REQUESTED (0) and UNKNOWN (3) attempts; invoices PROCESSING (1) or NEEDS_REVIEW (4).
constexpr pg::Prepared select_open_attempts{
    "select_open_attempts",
    "SELECT i.body, p.body FROM payments p JOIN invoices i ON i.id = p.invoice_id "
    "WHERE p.status IN (0, 3) AND p.id > $1 AND i.status IN (1, 4) "
    "AND NOT (p.status = 3 AND i.status = 4 AND i.review_of = p.id) ORDER BY p.id LIMIT $2"};
constexpr pg::Prepared select_payments_of{"select_payments_of",
                                          "SELECT body FROM payments WHERE invoice_id = $1 ORDER BY attempt"};
constexpr pg::Prepared payment_owner{
    "payment_owner", "SELECT (SELECT count(*) FROM payments WHERE id = $1), (SELECT count(*) FROM invoices WHERE id = $2)"};
// Keyset pages: the outbox on its commit order up to where the pass began,
// the scheduled events on (due, event_id) (`due >= $2` lets the index on (owner, due) bound the scan)
// up to their bound: a row with no number was written before migration 6, before every mark.
constexpr pg::Prepared select_undelivered{"select_undelivered",
                                          "SELECT seq, body FROM outbox WHERE NOT delivered AND owner = $1 "
                                          "AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"};
constexpr pg::Prepared last_outbox_seq{"last_outbox_seq", "SELECT coalesce(max(seq), 0) FROM outbox"};
constexpr pg::Prepared select_scheduled{"select_scheduled",
                                        "SELECT due, body, event_id FROM scheduled WHERE owner = $1 AND due >= $2 "
                                        "AND (due, event_id) > ($2, $3) AND coalesce(seq, 0) <= $4 ORDER BY due, event_id LIMIT $5"};
// The last number the sequence gave a scheduled row (0: none yet). It is not
// a commit order: a row whose nextval ran before this read can commit after
// it with a smaller number. Read at open, it still bounds the start's pass:
// the pass reads only this process's rows, and this process's owner is new at
// open, so every row of its own was numbered after the read (review 22, G6).
constexpr pg::Prepared last_scheduled_seq{
    "last_scheduled_seq", "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM scheduled_seq_seq"};
// The processes gone (no live row in owners) that still own undelivered
// outbox rows or retries, other than this one; none while this one's own row
// is not live (it may itself be taken for gone: what it claimed, others
// would claim again).
// The owners are listed by skipping from one to the next through the
// indexes on (owner, ...) (a recursive CTE: one index probe per owner), not
// by reading every undelivered row: a round costs O(owners), whatever the
// backlog (review 20, 8).
constexpr pg::Prepared dead_owners{
    "dead_owners",
    "WITH RECURSIVE o(owner) AS ((SELECT owner FROM outbox WHERE NOT delivered ORDER BY owner LIMIT 1) UNION ALL "
    "SELECT (SELECT x.owner FROM outbox x WHERE NOT x.delivered AND x.owner > o.owner ORDER BY x.owner LIMIT 1) "
    "FROM o WHERE o.owner IS NOT NULL), s(owner) AS ((SELECT owner FROM scheduled ORDER BY owner LIMIT 1) UNION ALL "
    "SELECT (SELECT x.owner FROM scheduled x WHERE x.owner > s.owner ORDER BY x.owner LIMIT 1) FROM s WHERE "
    "s.owner IS NOT NULL) SELECT d.owner FROM (SELECT owner FROM o UNION SELECT owner FROM s) d WHERE d.owner IS "
    "NOT NULL AND d.owner <> $1 AND NOT EXISTS (SELECT 1 FROM owners w WHERE w.owner = d.owner AND w.alive_until "
    ">= clock_timestamp()) AND EXISTS (SELECT 1 FROM owners m WHERE m.owner = $1 AND m.alive_until >= "
    "clock_timestamp())"};
// Rows of those processes ($2), claimed for this one. SKIP LOCKED: processes
// claiming at once each take other rows, none waits. A row claimed meanwhile
// is re-checked once locked, and its owner is a plain column of that row (a
// join with owners would not be re-checked): its new owner is not among the
// dead, so each row goes to one process.
// Events are claimed by invoice, so that one survivor delivers all of an
// invoice's orphans, in order (review 16, A8: SKIP LOCKED by row split them):
// first the oldest invoices ($2: at most) among the dead's ($1) whose lock (a
// transaction-level advisory lock on the schema and the invoice) this process
// gets, other survivors' skipped without a wait; then their rows ($3).
// The candidates come from a bounded prefix of each dead owner's rows in seq
// order (outbox_undelivered: (owner, seq)), $2 × 16 rows each, not from a
// grouping of all their rows: a round costs O($2), whatever the backlog
// (review 20, 8). An invoice among the first $2 to appear has its first row
// in the prefix; take_events then claims all of its rows, prefix or not.
constexpr pg::Prepared orphan_invoices{
    "orphan_invoices",
    "SELECT invoice_id FROM (SELECT invoice_id, first FROM (SELECT DISTINCT ON (invoice_id) invoice_id, seq AS first "
    "FROM (SELECT w.invoice_id, w.seq FROM unnest($1::text[]) AS d(owner) CROSS JOIN LATERAL (SELECT invoice_id, seq "
    "FROM outbox WHERE NOT delivered AND owner = d.owner ORDER BY seq LIMIT $2 * 16) w) p ORDER BY invoice_id, seq) f "
    "ORDER BY first LIMIT $2) c WHERE "
    "pg_try_advisory_xact_lock(hashtextextended('payments.outbox:' || current_schema() || ':' || invoice_id, 0))"};
constexpr pg::Prepared take_events{
    "take_events", "UPDATE outbox SET owner = $1 WHERE seq IN (SELECT o.seq FROM outbox o WHERE NOT o.delivered AND "
                   "o.owner = ANY($2::text[]) AND o.invoice_id = ANY($3::text[]) ORDER BY o.seq FOR UPDATE) "
                   "RETURNING seq, body"};
constexpr pg::Prepared take_scheduled{
    "take_scheduled", "UPDATE scheduled SET owner = $1 WHERE event_id IN (SELECT s.event_id FROM scheduled s WHERE "
                      "s.owner = ANY($2::text[]) ORDER BY s.due LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING due, body"};
constexpr pg::Prepared select_history{"select_history", "SELECT body FROM outbox WHERE invoice_id = $1 ORDER BY seq"};

constexpr std::array prepared = {insert_invoice, update_invoice, insert_payment, update_payment, insert_event,
                                 schedule_event, complete_key, claim_key, look_key, release_key, purge_keys,
                                 mark_events, unschedule, purge_events, select_invoice, invoice_seq, page_all,
                                 page_status, select_payment, select_payments_of, select_open_attempts, payment_owner,
                                 select_undelivered, last_outbox_seq, select_scheduled, last_scheduled_seq, select_history, hold_lease, take_lease,
                                 renew_owner, drop_owner, lease_fence, lease_epoch, mark_batch, sweep_owners,
                                 take_events, take_scheduled, dead_owners, register_owner, keep_events,
                                 keep_scheduled, keep_leases, forget_owner, orphan_invoices};

// One command for the writer: its statements, and what their results mean.
struct Job {
    std::vector<std::pair<char const*, Params>> statements;
    // Reads the statements' results, in order; an error rolls the command
    // back to its savepoint. May run more than once (a batch re-sent).
    std::function<Result<void>(std::vector<Rows>&)> check;
    Result<void> result = {};
};

// A failed statement's meaning for its command (the rest of the batch goes on).
Error refusal(Rows const& failed) {
    std::string const state = failed.sqlstate();
    if (state == "40P01" || state == "40001")
        return reject(ErrorCode::conflict, "a concurrent transaction wrote the same rows; try again");
    if (state == "55P03" || state == "57014")
        return storage_error("PostgreSQL did not answer within the statement timeout");
    return storage_error("PostgreSQL refused the write: " + failed.message());
}

template <class T, class Format>
std::string array_literal(std::vector<T> const& items, Format format) {
    std::string out = "{";
    for (auto const& item : items) {
        if (out.size() > 1) out += ',';
        out += format(item);
    }
    return out + "}";
}

std::string quoted_element(std::string const& text) {
    std::string out = "\"";
    for (char ch : text) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch;
    }
    return out + "\"";
}

// A random token naming this store among the processes sharing the database.
std::string new_owner() {
    std::random_device device;
    std::mt19937_64 rng((static_cast<std::uint64_t>(device()) << 32) ^ device());
    static constexpr char hex[] = "0123456789abcdef";
    std::string owner;
    for (int i = 0; i < 24; ++i) owner += hex[rng() % 16];
    return owner;
}

// Writes that name this process's token hold it shared; its replacement
// holds it alone, and new writes wait behind a replacement that waits (a
// stream of commits never starves it, as a reader-preferring rwlock would).
class TokenGate {
public:
    void lock_shared() {
        std::unique_lock guard(mutex_);
        changed_.wait(guard, [&] { return !replacing_; });
        ++sharing_;
    }
    // A write's wait, bounded (review 18, A-4): false when a replacement
    // held it off that long (std::shared_lock's timed constructor).
    template <class Rep, class Period>
    bool try_lock_shared_for(std::chrono::duration<Rep, Period> most) {
        std::unique_lock guard(mutex_);
        if (!changed_.wait_for(guard, most, [&] { return !replacing_; })) return false;
        ++sharing_;
        return true;
    }
    void unlock_shared() {
        std::lock_guard guard(mutex_);
        if (--sharing_ == 0) changed_.notify_all();
    }
    void lock() {
        std::unique_lock guard(mutex_);
        changed_.wait(guard, [&] { return !replacing_; });
        replacing_ = true;
        changed_.wait(guard, [&] { return sharing_ == 0; });
    }
    void unlock() {
        {
            std::lock_guard guard(mutex_);
            replacing_ = false;
        }
        changed_.notify_all();
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    int sharing_ = 0;       // Owned by: mutex_
    bool replacing_ = false; // Owned by: mutex_
};

} // namespace

Result<void> PostgresStoreOptions::validate() const {
    auto invalid = [](std::string detail) { return reject(ErrorCode::invalid_argument, std::move(detail)); };
    if (statement_timeout <= std::chrono::milliseconds::zero()) return invalid("the statement timeout must be positive");
    if (lease_timeout < statement_timeout)
        return invalid("the lease timeout (" + ms(lease_timeout) + ") must be at least the statement timeout (" +
                       ms(statement_timeout) + "): a process waiting that long on one statement would lose its "
                       "invoices to the others while it still drives them");
    return {};
}

struct PostgresStore::Impl {
    using Batch = GroupCommit<Job>::Batch;

    PostgresStoreOptions options;
    // The token naming this store in idempotency claims and in `commits`
    // (for the life of the store), and the one naming it in `owners` and on
    // its outbox rows, retries and leases: `owner`, replaced when a renewal
    // finds the registration lapsed or swept (the process stalled past its liveness).
    // A write naming `owner` holds `token` shared from reading it until it is
    // written, so that none lands under a token already replaced.
    std::string const identity = new_owner();
    mutable TokenGate token;
    std::string owner = identity; // Owned by: token
    // The new tokens of re-registrations not known to have committed (their
    // COMMIT reply lost): the next one keeps what they name (review 18, A-5).
    std::vector<std::string> pending_owners; // Owned by: token (held alone)
    std::atomic<std::uint64_t> reregistrations{0};

    std::string current_owner() const {
        std::shared_lock guard(token);
        return owner;
    }
    // The token held shared, by a read whose bookkeeping must land under the
    // token it read with; bounded as a commit's wait (pg::Failure: read()
    // answers it as StorageFailure).
    std::shared_lock<TokenGate> hold_token() const {
        std::shared_lock held(token, options.statement_timeout);
        if (!held) throw pg::Failure("", "this process's re-registration held the read off for the statement timeout");
        return held;
    }
    std::unique_ptr<pg::Connection> writer; // Owned by: the writer thread, once it runs

    mutable std::mutex readers_mutex;
    mutable std::vector<std::unique_ptr<pg::Connection>> idle_readers; // Owned by: readers_mutex
    mutable std::condition_variable reader_free;
    mutable std::size_t readers_open = 0; // Owned by: readers_mutex

    // Deliveries recorded since the last batch, written with the next.
    std::mutex marks_mutex;
    std::vector<std::int64_t> delivered_seqs;      // Owned by: marks_mutex
    std::vector<std::string> delivered_scheduled;  // Owned by: marks_mutex

    // Outbox and scheduled rows not yet delivered this run: event id → seq.
    std::mutex outbox_mutex;
    std::unordered_map<EventId, std::int64_t> outbox_seq; // Owned by: outbox_mutex
    std::unordered_set<EventId> scheduled_ids;            // Owned by: outbox_mutex
    application::StartMark start_mark;                    // read at open, then constant
    // Events this process published or armed, then lost to another process
    // while it stalled: its bus drops them instead of delivering them twice.
    std::unordered_set<EventId> lost; // Owned by: outbox_mutex
    std::atomic<bool> any_lost{false};
    // The event was delivered, or left to the next start: no copy of it is
    // on the bus any more to drop. Called under outbox_mutex.
    void forget_lost(EventId const& id) {
        if (any_lost.load() && lost.erase(id) != 0) any_lost = !lost.empty();
    }

    // Keys this process's requests hold: key → (fingerprint, completed by its commit).
    std::mutex claims_mutex;
    std::unordered_map<IdempotencyKey, std::pair<std::string, bool>> running; // Owned by: claims_mutex

    // The invoices whose lease this process took: invoice → the epoch it holds
    // (its writes are fenced by it), and the latest attempt it committed: at
    // which epoch, under which registration (the count of re-registrations),
    // when, and whether lease_to_drive() has answered for it from memory yet.
    // Forgotten once this process commits the invoice out of PROCESSING; one
    // that another process finished after a takeover stays in both until this
    // process ends, and a re-registration sends every `fences` key to
    // keep_leases (review 23, F5: a leak bounded by the invoices taken over
    // from this process, and harmless: a stale epoch only fences its writes).
    struct Origin {
        std::int64_t epoch = 0;
        std::string attempt;
        std::uint64_t registration = 0;
        std::chrono::steady_clock::time_point committed{};
        bool driven = false;
    };
    std::mutex leases_mutex;
    std::unordered_map<std::string, std::int64_t> fences; // Owned by: leases_mutex
    std::unordered_map<std::string, Origin> origins;      // Owned by: leases_mutex

    // This process's liveness, renewed by a thread of its own (a busy writer
    // cannot starve it), whose session also LISTENs on `channel`.
    std::string const channel = channel_of(options.schema);
    std::mutex heart_mutex;
    bool stopping = false; // Owned by: heart_mutex
    int const stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); // wakes the heart's poll() to stop
    std::thread heart;

    // The liveness as this process knows it: whether the last renewal failed,
    // whether one found the registration lapsed and registering anew has not
    // succeeded yet, and when the last renewal that succeeded was sent
    // (steady clock). A process whose renewals fail starts nothing new: its
    // leases may lapse under it.
    std::atomic<bool> renewal_failing{false};
    std::atomic<bool> found_lapsed{false};
    std::atomic<std::chrono::steady_clock::rep> renewed_at{std::chrono::steady_clock::now().time_since_epoch().count()};

    // Nobody can have taken this process's work: its registration lasts until
    // at least the last successful renewal's send + twice the lease timeout,
    // and that send is less than two thirds of a lease timeout old (a third
    // from lapsing, for a stall the steady clock did not see); a failed
    // renewal alone proves nothing lapsed (review 20, 4). `found_lapsed` is
    // read first: reregister() lists what was lost before renew() clears it.
    bool owns_its_work() const {
        if (found_lapsed.load()) return false;
        auto const since = std::chrono::steady_clock::now() -
                           std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(renewed_at.load()));
        return since < options.lease_timeout * 2 / 3;
    }
    // owns_its_work(), and the last renewal succeeded: lease() starts no
    // charge while a renewal fails, the cautious side.
    bool alive() const { return !renewal_failing && owns_its_work(); }

    // Called when another process may have left work (watch_work_left).
    std::mutex wake_mutex;
    std::function<void()> wake; // Owned by: wake_mutex; called under it

    std::atomic<std::uint64_t> transactions{0}, commands{0}, storage_errors{0}, bookkeeping_failures{0};
    std::int64_t batches = 0; // Owned by: the writer thread
    mutable std::atomic<std::uint64_t> read_errors{0};
    std::unique_ptr<GroupCommit<Job>> queue; // last: its thread stops first

    explicit Impl(PostgresStoreOptions o) : options(std::move(o)) {}
    ~Impl() {
        if (stop_fd >= 0) ::close(stop_fd);
    }

    // The schema's NOTIFY channel: one per schema, so that schemas sharing a
    // database (tests, several deployments) do not wake each other.
    static std::string channel_of(std::string const& schema) {
        std::string name = schema.empty() ? std::string("payments_work") : "payments_work_" + schema;
        name.resize(std::min<std::size_t>(name.size(), 63)); // NAMEDATALEN - 1
        return name;
    }

    std::size_t readers() const { return std::max<std::size_t>(options.pool_size, 2) - 1; }

    // How long a session waits for one result: past the statement timeout
    // (the server's own answer comes first), a server that stopped answering.
    std::chrono::milliseconds patience() const {
        return options.statement_timeout + std::max(options.statement_timeout, std::chrono::milliseconds(250));
    }

    // A new session: timeouts, the schema, and (once the tables exist) the statements.
    std::unique_ptr<pg::Connection> connect(bool prepare) const {
        std::string const timeout = std::to_string(std::max<std::int64_t>(options.connect_timeout.count(), 1));
        // A peer that vanished (host down, cable cut) is noticed by TCP
        // keepalives and unacknowledged writes, not after the kernel's hours.
        std::string const unacknowledged = std::to_string(std::max<std::int64_t>(options.statement_timeout.count() * 2, 10'000));
        std::array<char const*, 9> const keywords = {"connect_timeout", "application_name", "keepalives",
                                                     "keepalives_idle", "keepalives_interval", "keepalives_count",
                                                     "tcp_user_timeout", "dbname", nullptr};
        std::array<char const*, 9> const values = {timeout.c_str(), options.application_name.c_str(), "1", "10", "5", "3",
                                                   unacknowledged.c_str(), options.uri.c_str(), nullptr};
        auto c = std::make_unique<pg::Connection>(keywords.data(), values.data());
        c->patience(patience());
        std::string const ms = std::to_string(options.statement_timeout.count());
        std::string const idle = std::to_string(std::max<std::int64_t>(options.statement_timeout.count(), 1'000));
        // A commit is answered only once durable: synchronous_commit is pinned
        // on whatever the database's or role's default (off or local would
        // answer before the WAL is flushed). A session paused inside a
        // transaction (a stopped process) gives its row locks up.
        std::string setup = "SET client_min_messages = warning; SET synchronous_commit = on; SET statement_timeout = " +
                            ms + "; SET lock_timeout = " + ms + "; SET idle_in_transaction_session_timeout = " + idle + ";";
        if (!options.schema.empty()) setup += "SET search_path TO " + identifier(*c, options.schema) + ";";
        c->exec(setup.c_str());
        if (prepare)
            for (auto const& p : prepared) c->prepare(p);
        return c;
    }

    static std::string identifier(pg::Connection& c, std::string const& name) {
        char* escaped = PQescapeIdentifier(c.get(), name.c_str(), name.size());
        if (!escaped) throw pg::Failure("", "cannot quote the schema name");
        std::string out = escaped;
        PQfreemem(escaped);
        return out;
    }

    // Runs `f` on a pooled connection; a failure (the server gone, a timeout,
    // a record that does not decode) drops the connection and is thrown as
    // application::StorageFailure: never answered as "nothing there", which
    // a caller would take for "not found".
    template <class F>
    auto read(F&& f) const -> decltype(f(std::declval<pg::Connection&>())) {
        std::unique_ptr<pg::Connection> c;
        {
            std::unique_lock guard(readers_mutex);
            // Every session busy (or hung) past the statement timeout: unavailable, not a hang.
            if (!reader_free.wait_for(guard, options.statement_timeout,
                                      [&] { return !idle_readers.empty() || readers_open < readers(); })) {
                ++read_errors;
                throw application::StorageFailure("PostgreSQL cannot be read: all " + std::to_string(readers()) +
                                                  " reading connections stayed busy for the statement timeout (" +
                                                  ms(options.statement_timeout) + ")");
            }
            if (!idle_readers.empty()) {
                c = std::move(idle_readers.back());
                idle_readers.pop_back();
            } else {
                ++readers_open;
            }
        }
        struct Return {
            Impl const& impl;
            std::unique_ptr<pg::Connection>& c;
            ~Return() {
                std::lock_guard guard(impl.readers_mutex);
                if (c) impl.idle_readers.push_back(std::move(c));
                else --impl.readers_open;
                impl.reader_free.notify_one();
            }
        } give_back{*this, c};
        for (bool first = true;; first = false) {
            try {
                if (!c) c = connect(true);
                return f(*c);
            } catch (std::exception const& failure) {
                // A pooled session the server ended meanwhile gets one retry on a new one.
                bool const stale = first && c && c->broken();
                c.reset();
                if (!stale) {
                    ++read_errors;
                    throw application::StorageFailure(std::string("PostgreSQL cannot be read: ") + failure.what());
                }
            }
        }
    }

    // read() for the store's own bookkeeping (a count, a lease's epoch), whose
    // callers treat "unknown" as the cautious answer: nothing on a failure.
    template <class F>
    auto read_or_nothing(F&& f) const -> decltype(f(std::declval<pg::Connection&>())) {
        try {
            return read(std::forward<F>(f));
        } catch (application::StorageFailure const&) {
            return {};
        }
    }

    Result<void> submit(Job job) {
        auto shared = std::make_shared<Job>(std::move(job));
        auto const submitted = queue->submit(shared);
        if (submitted == GroupCommit<Job>::Submitted::written) return shared->result;
        return refused(submitted);
    }

    // Why the writer's queue did not take (or gave up) a command.
    Result<void> refused(GroupCommit<Job>::Submitted submitted) {
        switch (submitted) {
        case GroupCommit<Job>::Submitted::written: return {};
        case GroupCommit<Job>::Submitted::full:
            ++storage_errors;
            return storage_error("PostgreSQL's writer is behind: " + std::to_string(options.max_queued) +
                                 " commands wait for it already");
        case GroupCommit<Job>::Submitted::expired:
            ++storage_errors;
            return storage_error("PostgreSQL's writer did not take the command within the statement timeout (" +
                                 ms(options.statement_timeout) + "): it was not sent");
        case GroupCommit<Job>::Submitted::closed: break;
        }
        return reject(ErrorCode::unavailable, "the store is closed");
    }

    // Registers (`fresh`) or renews this process's liveness on `c`; a renewal
    // that finds the registration lapsed or swept registers anew (reregister()).
    // Throws pg::Failure (recorded as failing).
    void renew(pg::Connection& c, bool fresh = false) {
        auto const lasting = static_cast<std::int64_t>(options.lease_timeout.count()) * 2;
        // Dated from the send, not the reply: the server dates alive_until from
        // its UPDATE, which is after the send, so a stall while the reply was on
        // its way cannot stretch this process's idea of its liveness (review 20, 2).
        auto const sent = std::chrono::steady_clock::now();
        try {
            std::string const me = current_owner();
            if (fresh) c.query(register_owner.name, Params().text(me).integer(lasting));
            else if (c.query(renew_owner.name, Params().text(me).integer(lasting)).affected() == 0) {
                // Taken for gone: doubtful until registered anew (and until then, if that fails).
                found_lapsed = true;
                reregister(c, me);
            }
        } catch (pg::Failure const&) {
            renewal_failing = true;
            throw;
        }
        renewed_at = sent.time_since_epoch().count();
        found_lapsed = false;
        renewal_failing = false;
    }

    void reregister(pg::Connection& c, std::string const& old);

    void work_left() {
        std::lock_guard guard(wake_mutex);
        if (wake) wake();
    }

    // The NOTIFYs that reached the heart's session: one wake-up for them all.
    void drain(pg::Connection& c) {
        bool notified = false;
        while (PGnotify* n = PQnotifies(c.get())) {
            notified = true;
            PQfreemem(n);
        }
        if (notified) work_left();
    }

    // Renews this process's liveness every lease_timeout / 3, removes the
    // processes whose liveness lapsed (NOTIFYing the others), and between
    // renewals waits on its session for their NOTIFYs.
    void run_heart() {
        std::unique_ptr<pg::Connection> c;
        auto const every = std::max(options.lease_timeout / 3, std::chrono::milliseconds(1));
        auto next = std::chrono::steady_clock::now();
        // open() has just registered: a first renewal that came late (a busy
        // machine) would only revive a registration a test or a peer has
        // since declared lapsed.
        bool registered = true;
        int failures = 0; // in a row
        for (;;) {
            {
                std::lock_guard guard(heart_mutex);
                if (stopping) break;
            }
            if (std::chrono::steady_clock::now() >= next) {
                next = std::chrono::steady_clock::now() + every;
                try {
                    if (!c || c->broken()) {
                        c = connect(true);
                        c->exec(("LISTEN " + identifier(*c, channel)).c_str());
                        work_left(); // what was NOTIFYed while no session listened
                    }
                    if (!std::exchange(registered, false)) renew(*c);
                    c->query(sweep_owners.name, Params().text(channel));
                    drain(*c);
                    failures = 0;
                } catch (pg::Failure const&) {
                    // Unrenewed, the leases lapse and other processes take the work over.
                    ++storage_errors;
                    c.reset();
                    // One failure (a dropped session, a lost packet) proves nothing
                    // lapsed: tried again at once on a new session, then every
                    // ninth of the lease timeout, well before the deliveries are
                    // held back at two thirds of it (review 20, 4).
                    next = std::chrono::steady_clock::now() + (failures++ == 0 ? std::chrono::milliseconds::zero() : every / 3);
                }
            }
            auto const left = std::chrono::ceil<std::chrono::milliseconds>(next - std::chrono::steady_clock::now());
            std::array<pollfd, 2> fds{{{stop_fd, POLLIN, 0}, {c ? PQsocket(c->get()) : -1, POLLIN, 0}}};
            if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <= 0) continue;
            if (c && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                if (PQconsumeInput(c->get()) != 1) c.reset(); // gone: reconnected at the next renewal
                else drain(*c);
            }
        }
        // A clean stop frees this process's leases, outbox and retries at once, and says so.
        try {
            if (!c || c->broken()) c = connect(true);
            c->query(drop_owner.name, Params().text(current_owner()).text(channel));
        } catch (pg::Failure const&) {
            ++storage_errors; // they lapse instead
        }
    }

    void write_batch(Batch& batch);
    std::optional<bool> committed(int backend, std::int64_t batch) const;
    enum class Sent { all, refused, bookkeeping_failed };
    Sent write_commands(pg::Connection& c, Batch& batch, std::size_t start, std::size_t sent);
};

// One transaction: the recorded deliveries, then every command in a savepoint
// of its own, all sent as one pipeline and answered by one sync; one COMMIT.
// A command refused (a version moved, a key held elsewhere) is rolled back to
// its savepoint and the commands after it are sent again. A failure of the
// server or the network fails the whole batch, and nothing of it is answered
// as done.
void PostgresStore::Impl::write_batch(Batch& batch) {
    std::vector<std::int64_t> seqs;
    std::vector<std::string> unscheduled;
    {
        std::lock_guard guard(marks_mutex);
        seqs.swap(delivered_seqs);
        unscheduled.swap(delivered_scheduled);
    }
    if (batch.empty() && seqs.empty() && unscheduled.empty()) return;
    std::int64_t const number = ++batches;
    int backend = 0;
    bool commit_sent = false;
    try {
        if (!writer || writer->broken()) {
            writer.reset();
            writer = connect(true);
        }
        pg::Connection& c = *writer;
        backend = PQbackendPID(c.get());
        c.enter_pipeline();
        c.send_sql("BEGIN");
        std::size_t own = 1;
        // The bookkeeping (deliveries, the retention purge once every 1024
        // batches) is in a savepoint of its own: when it fails (a deadlock
        // on outbox rows another process claims, a purge past the statement
        // timeout) it is rolled back and the commands go on without it.
        bool const purge = options.event_retention && number % 1024 == 1;
        if (!seqs.empty() || !unscheduled.empty() || purge) {
            c.send_sql("SAVEPOINT bookkeeping");
            ++own;
        }
        if (!seqs.empty()) {
            c.send(mark_events.name, Params().text(array_literal(seqs, [](std::int64_t s) { return std::to_string(s); })));
            ++own;
        }
        if (!unscheduled.empty()) {
            c.send(unschedule.name, Params().text(array_literal(unscheduled, quoted_element)));
            ++own;
        }
        if (purge) {
            auto const oldest = std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now()) -
                                *options.event_retention;
            c.send(purge_events.name, Params().integer(ticks(oldest)));
            ++own;
        }
        std::size_t start = 0;
        for (;;) {
            Sent const sent = write_commands(c, batch, start, std::exchange(own, 0));
            if (sent == Sent::all) break;
            if (sent == Sent::bookkeeping_failed) {
                ++bookkeeping_failures;
                c.send_sql("ROLLBACK TO SAVEPOINT bookkeeping");
                c.sync();
                if (Rows r = c.next(); !r.ok()) throw pg::Failure(r.sqlstate(), r.message());
                c.until_sync();
                std::lock_guard guard(marks_mutex); // the deliveries wait for the next batch
                delivered_seqs.insert(delivered_seqs.end(), seqs.begin(), seqs.end());
                delivered_scheduled.insert(delivered_scheduled.end(), unscheduled.begin(), unscheduled.end());
                seqs.clear();
                unscheduled.clear();
                continue; // every command again, from the first
            }
            // write_commands() stopped at a refused command: continue after it.
            start = static_cast<std::size_t>(std::find_if(batch.begin() + static_cast<std::ptrdiff_t>(start), batch.end(),
                                                           [](auto const& job) { return !job->result; }) -
                                              batch.begin()) + 1;
        }
        c.send(mark_batch.name, Params().text(identity).integer(number));
        c.send_sql("COMMIT");
        c.sync();
        commit_sent = true;
        for (int i = 0; i < 2; ++i)
            if (Rows r = c.next(); !r.ok()) throw pg::Failure(r.sqlstate(), r.message());
        c.until_sync();
        c.exit_pipeline();
        ++transactions;
        commands += batch.size();
    } catch (pg::Failure const& failure) {
        ++storage_errors;
        writer.reset(); // the server rolls back what the session had begun
        // The COMMIT sent and its reply lost: the database says whether it
        // happened. Committed, each command has the answer its check gave.
        std::optional<bool> const kept = commit_sent ? committed(backend, number) : std::optional<bool>(false);
        if (kept == true) {
            ++transactions;
            commands += batch.size();
            return;
        }
        std::string const detail = kept ? std::string("PostgreSQL cannot write: ") + failure.what()
                                        : std::string("PostgreSQL lost the connection after the COMMIT was sent and "
                                                      "cannot be asked whether it happened: ") + failure.what();
        for (auto& job : batch) job->result = storage_error(detail);
        // The deliveries wait for the next batch.
        std::lock_guard guard(marks_mutex);
        delivered_seqs.insert(delivered_seqs.end(), seqs.begin(), seqs.end());
        delivered_scheduled.insert(delivered_scheduled.end(), unscheduled.begin(), unscheduled.end());
    }
}

// This process was taken for gone while it stalled (its registration lapsed):
// whatever another process took over meanwhile (events, retries, leases) is
// no longer its own. It registers under a new token and, in the same
// transaction, claims what the old token still owns (leases at their epoch:
// nobody drove those meanwhile); what it published or armed and no longer
// owns is dropped by its bus (still_owns()), and its writes that drive an
// invoice it lost are refused by the fence (the lease names another owner).
void PostgresStore::Impl::reregister(pg::Connection& c, std::string const& old) {
    std::unique_lock replacing(token); // the writes naming `old` land first
    if (owner != old) return;          // another renewal did it
    std::string const next = new_owner();
    std::vector<std::string> earlier = pending_owners;
    earlier.push_back(old);
    std::string const before = array_literal(earlier, quoted_element);
    std::vector<std::string> held;
    {
        std::lock_guard guard(leases_mutex);
        for (auto const& [invoice, epoch] : fences) held.push_back(invoice);
    }
    std::unordered_set<std::int64_t> kept_events;
    std::unordered_set<std::string> kept_scheduled;
    // A failure drops the session (the caller's), which rolls back.
    c.exec("BEGIN");
    c.query(register_owner.name, Params().text(next).integer(static_cast<std::int64_t>(options.lease_timeout.count()) * 2));
    Rows events = c.query(keep_events.name, Params().text(before).text(next));
    for (int row = 0; row < events.size(); ++row) kept_events.insert(events.integer(row, 0));
    Rows scheduled = c.query(keep_scheduled.name, Params().text(before).text(next));
    for (int row = 0; row < scheduled.size(); ++row) kept_scheduled.emplace(scheduled.bytes(row, 0));
    c.query(keep_leases.name, Params().text(before).text(next).text(array_literal(held, quoted_element)));
    c.query(forget_owner.name, Params().text(before));
    try {
        c.exec("COMMIT");
    } catch (pg::Failure const&) {
        pending_owners.push_back(next); // it may have committed: its rows are kept by the next attempt
        throw;
    }
    owner = next;
    pending_owners.clear();
    ++reregistrations;
    std::lock_guard guard(outbox_mutex);
    for (auto it = outbox_seq.begin(); it != outbox_seq.end();) {
        if (kept_events.contains(it->second)) {
            ++it;
            continue;
        }
        lost.insert(it->first);
        it = outbox_seq.erase(it);
    }
    for (auto it = scheduled_ids.begin(); it != scheduled_ids.end();) {
        if (kept_scheduled.contains(std::string(it->str()))) {
            ++it;
            continue;
        }
        lost.insert(*it);
        it = scheduled_ids.erase(it);
    }
    any_lost = !lost.empty();
}

// Whether the batch numbered `batch`, whose COMMIT went out on the session of
// `backend` and whose reply was lost, committed. That session is ended first
// (waiting for it, within the statement timeout), so that the answer is final;
// nullopt when PostgreSQL cannot tell.
std::optional<bool> PostgresStore::Impl::committed(int backend, std::int64_t batch) const {
    try {
        auto c = connect(false);
        std::string const pid = std::to_string(backend);
        std::string const wait = std::to_string(std::max<std::int64_t>(options.statement_timeout.count() - 100, 100));
        // Each within the session's patience: a server that hangs here too
        // hangs neither the writer nor, through the token, the heart.
        c->query_sql("SELECT pg_terminate_backend(pid, $2::bigint) FROM pg_stat_activity WHERE pid = $1::int",
                     {pid.c_str(), wait.c_str()});
        Rows r = c->query_sql("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1::int)::text, "
                              "(SELECT batch FROM commits WHERE owner = $2)::text",
                              {pid.c_str(), identity.c_str()});
        if (r.size() != 1 || r.bytes(0, 0) == "true") return std::nullopt;
        return !r.null(0, 1) && r.bytes(0, 1) == std::to_string(batch);
    } catch (pg::Failure const&) {
        return std::nullopt;
    }
}

// Sends commands [start, end) each after a savepoint, syncs, and checks them
// in order, after the `sent` statements queued before them (BEGIN, then the
// bookkeeping in its savepoint: bookkeeping_failed when a statement of it
// failed, and nothing after it ran). `refused` when a command was refused: it
// is rolled back to its savepoint (with those after it, whose results are
// dropped) and its result says why.
PostgresStore::Impl::Sent PostgresStore::Impl::write_commands(pg::Connection& c, Batch& batch, std::size_t start,
                                                              std::size_t sent) {
    for (std::size_t i = start; i < batch.size(); ++i) {
        c.send_sql("SAVEPOINT c" + std::to_string(i));
        for (auto const& [name, params] : batch[i]->statements) c.send(name, params);
    }
    c.sync();
    // BEGIN and the bookkeeping's savepoint must succeed; the bookkeeping may fail.
    for (std::size_t i = 0; i < sent; ++i) {
        Rows r = c.next();
        if (r.ok()) continue;
        if (i < 2 || r.status() == PGRES_PIPELINE_ABORTED) throw pg::Failure(r.sqlstate(), r.message());
        c.until_sync(); // the rest of the segment was not run
        return Sent::bookkeeping_failed;
    }
    std::optional<std::size_t> refused;
    for (std::size_t i = start; i < batch.size(); ++i) {
        Rows savepoint = c.next();
        std::vector<Rows> results;
        for (std::size_t s = 0; s < batch[i]->statements.size(); ++s) results.push_back(c.next());
        if (refused) continue; // rolled back with the refused one, sent again
        if (!savepoint.ok()) throw pg::Failure(savepoint.sqlstate(), savepoint.message());
        Job& job = *batch[i];
        auto failed = std::find_if(results.begin(), results.end(), [](Rows const& r) { return !r.ok(); });
        if (failed != results.end()) {
            job.result = refusal(*failed);
        } else {
            try {
                job.result = job.check(results);
            } catch (std::exception const& e) {
                job.result = storage_error(std::string("a stored record cannot be read: ") + e.what());
            }
        }
        if (!job.result) refused = i;
    }
    c.until_sync();
    if (!refused) return Sent::all;
    c.send_sql("ROLLBACK TO SAVEPOINT c" + std::to_string(*refused));
    c.sync();
    if (Rows r = c.next(); !r.ok()) throw pg::Failure(r.sqlstate(), r.message());
    c.until_sync();
    return Sent::refused;
}

PostgresStore::PostgresStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
    std::size_t const most = impl_->options.group_commit ? impl_->options.max_batch : 1;
    impl_->queue = std::make_unique<GroupCommit<Job>>(
        most, [impl = impl_.get()](Impl::Batch& b) { impl->write_batch(b); }, impl_->options.max_queued,
        impl_->options.statement_timeout);
    impl_->heart = std::thread([impl = impl_.get()] { impl->run_heart(); });
}

PostgresStore::~PostgresStore() { close(); }

void PostgresStore::close() {
    // The pending delivery marks are written first (the queue's last batch),
    // then the heart drops the owner row and NOTIFYs: the survivors it wakes
    // find nothing this process delivered still undelivered.
    impl_->queue->close();
    {
        std::lock_guard guard(impl_->heart_mutex);
        impl_->stopping = true;
    }
    std::uint64_t const one = 1;
    if (impl_->stop_fd >= 0) (void)!::write(impl_->stop_fd, &one, sizeof one);
    if (impl_->heart.joinable()) impl_->heart.join();
    impl_->writer.reset();
    std::lock_guard guard(impl_->readers_mutex);
    impl_->idle_readers.clear();
}

namespace {

// How long a migration's statement waits for a table's lock before it gives
// way and is tried again: while it waits, every later statement on that table
// waits behind it, and the live processes' commits time out (review 21, F5).
std::chrono::milliseconds migration_lock_wait(PostgresStoreOptions const& options) {
    return std::clamp(options.statement_timeout / 5, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
}

bool lock_not_available(pg::Failure const& failure) { return failure.sqlstate == "55P03"; }

std::optional<postgres::ConcurrentIndex> concurrent_index_of(int version) {
    for (auto const& index : postgres::concurrent_indexes)
        if (index.version == version) return index;
    return std::nullopt;
}

// Builds `index` CONCURRENTLY (no transaction: writers go on), after
// dropping an INVALID one that an interrupted build left. Its waits (for
// the transactions older than the build) lock nobody out, so they are not
// bounded here: the live processes' own timeouts end those transactions.
void build_concurrently(pg::Connection& c, postgres::ConcurrentIndex const& index, std::string const& lock_wait) {
    c.exec("SET lock_timeout = 0");
    Rows valid = c.query_sql("SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass($1)", {index.name});
    if (valid.size() == 1 && valid.bytes(0, 0) == "false")
        c.exec((std::string("DROP INDEX CONCURRENTLY IF EXISTS ") + index.name).c_str());
    c.exec((std::string("CREATE INDEX CONCURRENTLY IF NOT EXISTS ") + index.name + " " + index.definition).c_str());
    c.exec(("SET lock_timeout = " + lock_wait).c_str());
}

// The schema, created or migrated forward on `c`, a session of its own (its
// settings are the migration's), under the migration lock: each migration in
// a transaction of its own, with no statement timeout and a short lock
// timeout, tried again until a deadline when a lock was not available.
Result<void> migrate(pg::Connection& c, PostgresStoreOptions const& options, std::string const& schema) {
    std::string const where = options.schema.empty() ? std::string("in use") : options.schema;
    auto const wait = migration_lock_wait(options);
    std::string const lock_wait = std::to_string(wait.count());
    auto const deadline = std::chrono::steady_clock::now() + std::max(options.statement_timeout * 6, std::chrono::milliseconds(2000));
    auto const give_way = [&] {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20)); // the live transactions' turn
        return true;
    };
    auto const busy = [&](std::string const& what) {
        return storage_error("the schema " + where + " could not be migrated: " + what + " for " +
                             ms(std::chrono::duration_cast<std::chrono::milliseconds>(options.statement_timeout * 6)) +
                             "; try again");
    };
    c.patience(std::chrono::milliseconds::zero()); // a big table's migration takes what it takes
    c.exec(("SET statement_timeout = 0; SET lock_timeout = " + lock_wait).c_str());
    while (c.query_sql(postgres::migration_lock, {}).bytes(0, 0) != "t")
        if (!give_way()) return busy("another process held the migration lock");
    for (;;) {
        int version = 0;
        std::optional<postgres::ConcurrentIndex> index;
        try {
            c.exec("BEGIN");
            if (!schema.empty()) c.exec(("CREATE SCHEMA IF NOT EXISTS " + schema).c_str());
            c.exec("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)");
            Rows found = c.query_sql("SELECT version::bigint FROM schema_version", {}, 1);
            if (found.size() == 0) c.exec("INSERT INTO schema_version VALUES (0)");
            else version = static_cast<int>(found.integer(0, 0));
            if (version > PostgresStore::schema_version) {
                c.exec("ROLLBACK");
                return storage_error("the schema " + where + " has version " + std::to_string(version) +
                                     ", newer than this release reads (" + std::to_string(PostgresStore::schema_version) +
                                     "); run the release that wrote it");
            }
            if (version == PostgresStore::schema_version) {
                c.exec("COMMIT");
                break;
            }
            c.exec(postgres::migrations[static_cast<std::size_t>(version)]);
            index = concurrent_index_of(version + 1);
            if (!index) c.exec(("UPDATE schema_version SET version = " + std::to_string(version + 1)).c_str());
            c.exec("COMMIT");
        } catch (pg::Failure const& failure) {
            if (!lock_not_available(failure)) throw;
            c.exec("ROLLBACK");
            if (!give_way()) return busy("a table stayed locked by live transactions");
            continue;
        }
        if (index) {
            build_concurrently(c, *index, lock_wait);
            c.exec(("UPDATE schema_version SET version = " + std::to_string(version + 1)).c_str());
        }
    }
    c.exec(postgres::migration_unlock);
    return {};
}

// Review 21, F7: an invoice written before schema 5 names no attempt under
// review (review_of ''), so a janitor's round reads its UNKNOWN attempt until
// the invoice is written again. Filled in at open, after the migration's
// transaction, a page at a time and each row at its version (a row written
// meanwhile has it already; an older release's write leaves '' again, which
// is only read as before). A record that does not decode is left as it was.
void backfill_review_of(pg::Connection& c) {
    std::string after = "0";
    for (;;) {
        Rows r = c.query_sql("SELECT seq, id, version, body FROM invoices WHERE status = 4 AND review_of = '' "
                             "AND seq > $1::bigint ORDER BY seq LIMIT 256",
                             {after.c_str()}, 1);
        if (r.size() == 0) return;
        after = std::to_string(r.integer(r.size() - 1, 0));
        for (int row = 0; row < r.size(); ++row) {
            std::string review_of;
            try {
                review_of = std::string(codec::decode_invoice(r.bytes(row, 3)).under_review().str());
            } catch (std::exception const&) {
                continue;
            }
            if (review_of.empty()) continue;
            std::string const id(r.bytes(row, 1));
            std::string const version = std::to_string(r.integer(row, 2));
            c.query_sql("UPDATE invoices SET review_of = $1 WHERE id = $2 AND version = $3::bigint AND review_of = ''",
                        {review_of.c_str(), id.c_str(), version.c_str()}, 1);
        }
    }
}

} // namespace

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(PostgresStoreOptions options) {
    if (auto valid = options.validate(); !valid) return valid.error();
    auto impl = std::make_unique<Impl>(std::move(options));
    try {
        auto c = impl->connect(false);
        std::string const schema = impl->options.schema.empty() ? "" : Impl::identifier(*c, impl->options.schema);
        // On a session of its own, dropped after (its timeouts are the migration's).
        if (auto migrated = migrate(*impl->connect(false), impl->options, schema); !migrated) return migrated.error();
        backfill_review_of(*c);
        for (auto const& p : prepared) c->prepare(p);
        // Where the start's passes end (review 21, F6). This process's owner
        // is new, so nothing of its own is at or below them.
        impl->start_mark = {static_cast<std::uint64_t>(c->query(last_outbox_seq.name, Params()).integer(0, 0)),
                       static_cast<std::uint64_t>(c->query(last_scheduled_seq.name, Params()).integer(0, 0))};
        impl->renew(*c, true); // alive before any lease is taken
        impl->writer = std::move(c);
    } catch (pg::Failure const& failure) {
        return storage_error(std::string("cannot open the PostgreSQL store: ") + failure.what());
    }
    return std::unique_ptr<PostgresStore>(new PostgresStore(std::move(impl)));
}

std::optional<Invoice> PostgresStore::invoice(InvoiceId const& id) const {
    return impl_->read([&](pg::Connection& c) -> std::optional<Invoice> {
        Rows r = c.query(select_invoice.name, Params().text(id.str()));
        if (r.size() == 0) return std::nullopt;
        return codec::decode_invoice(r.bytes(0, 0));
    });
}

application::InvoicePage PostgresStore::invoices(application::InvoiceQuery const& query) const {
    return impl_->read([&](pg::Connection& c) {
        application::InvoicePage page;
        std::int64_t after = 0;
        if (query.after) {
            Rows r = c.query(invoice_seq.name, Params().text(query.after->str()));
            if (r.size() == 0) return page;
            after = r.integer(0, 0);
        }
        auto const limit = static_cast<std::int64_t>(query.limit) + 1;
        Rows r = query.status ? c.query(page_status.name, Params()
                                                              .integer(static_cast<std::int64_t>(*query.status))
                                                              .integer(after)
                                                              .integer(limit))
                              : c.query(page_all.name, Params().integer(after).integer(limit));
        for (int row = 0; row < r.size(); ++row) {
            if (page.data.size() == query.limit) {
                page.next = page.data.back().id();
                break;
            }
            page.data.push_back(codec::decode_invoice(r.bytes(row, 0)));
        }
        return page;
    });
}

std::optional<Payment> PostgresStore::payment(PaymentId const& id) const {
    return impl_->read([&](pg::Connection& c) -> std::optional<Payment> {
        Rows r = c.query(select_payment.name, Params().text(id.str()));
        if (r.size() == 0) return std::nullopt;
        return codec::decode_payment(r.bytes(0, 0));
    });
}

std::vector<Payment> PostgresStore::payments_of(InvoiceId const& id) const {
    return impl_->read([&](pg::Connection& c) {
        std::vector<Payment> result;
        Rows r = c.query(select_payments_of.name, Params().text(id.str()));
        for (int row = 0; row < r.size(); ++row) result.push_back(codec::decode_payment(r.bytes(row, 0)));
        return result;
    });
}

application::OpenAttemptPage PostgresStore::open_attempts(std::optional<PaymentId> const& after,
                                                          std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::OpenAttemptPage page;
    page.data = impl_->read([&](pg::Connection& c) {
        std::vector<application::OpenAttempt> found;
        Rows r = c.query(select_open_attempts.name, Params()
                                                        .text(after ? after->str() : std::string_view(""))
                                                        .integer(static_cast<std::int64_t>(limit)));
        for (int row = 0; row < r.size(); ++row)
            found.push_back({codec::decode_invoice(r.bytes(row, 0)), codec::decode_payment(r.bytes(row, 1))});
        return found;
    });
    if (page.data.size() == limit) page.next = page.data.back().payment.id();
    return page;
}

namespace {

// The writes of one commit, and how to read their results.
Job commit_job(Encoded const& e, std::string const& owner, std::string const& identity,
               std::optional<std::int64_t> fence, std::vector<std::int64_t>& seqs, std::int64_t& epoch) {
    Job job;
    std::string const invoice_id = e.invoice ? e.invoice->id : e.payments.empty() ? std::string() : e.payments.front().invoice_id;
    if (fence) job.statements.emplace_back(lease_fence.name, Params().text(invoice_id).text(owner).integer(*fence));
    auto row_params = [](Encoded::Row const& row) {
        return Params().integer(row.status).integer(static_cast<std::int64_t>(row.version)).bytes(row.body).text(row.id);
    };
    if (e.invoice) {
        Encoded::Row const& row = *e.invoice;
        if (row.expected == 0)
            job.statements.emplace_back(insert_invoice.name, Params()
                                                                 .text(row.id)
                                                                 .integer(row.status)
                                                                 .integer(static_cast<std::int64_t>(row.version))
                                                                 .bytes(row.body)
                                                                 .text(row.review_of));
        else
            job.statements.emplace_back(
                update_invoice.name,
                row_params(row).integer(static_cast<std::int64_t>(row.expected)).text(row.review_of));
    }
    for (auto const& row : e.payments) {
        if (row.expected == 0)
            job.statements.emplace_back(insert_payment.name, Params()
                                                                 .text(row.id)
                                                                 .text(row.invoice_id)
                                                                 .integer(row.attempt)
                                                                 .integer(row.status)
                                                                 .integer(static_cast<std::int64_t>(row.version))
                                                                 .bytes(row.body));
        else
            job.statements.emplace_back(
                update_payment.name,
                row_params(row).integer(static_cast<std::int64_t>(row.expected)).text(row.invoice_id));
    }
    for (auto const& event : e.events)
        job.statements.emplace_back(
            insert_event.name, Params().text(event.id).text(event.invoice_id).integer(event.at).bytes(event.body).text(owner));
    for (auto const& event : e.scheduled)
        job.statements.emplace_back(
            schedule_event.name,
            Params().text(event.id).integer(event.at).bytes(event.body).text(event.invoice_id).text(owner));
    bool const new_attempt =
        std::any_of(e.payments.begin(), e.payments.end(), [](Encoded::Row const& row) { return row.expected == 0; });
    if (new_attempt) job.statements.emplace_back(hold_lease.name, Params().text(invoice_id).text(owner));
    if (e.idempotency) {
        auto const& [scope, key, fingerprint, outcome] = *e.idempotency;
        job.statements.emplace_back(complete_key.name, Params()
                                                           .text(scope)
                                                           .text(key)
                                                           .text(fingerprint)
                                                           .text(identity)
                                                           .integer(e.idempotency_since)
                                                           .bytes(outcome));
    }
    job.check = [&e, &seqs, &epoch, new_attempt, fence, invoice_id](std::vector<Rows>& results) -> Result<void> {
        std::size_t at = 0;
        if (fence && results[at++].size() == 0)
            return reject(ErrorCode::conflict, "invoice " + invoice_id + " is driven by another process now: this one's lease (epoch " +
                                                   std::to_string(*fence) + ") was taken over");
        auto written = [&](Encoded::Row const& row, char const* kind) -> Result<void> {
            if (results[at++].affected() != 0) return {};
            if (row.expected == 0) return reject(ErrorCode::already_exists, std::string(kind) + " " + row.id + " already exists");
            return reject(ErrorCode::conflict, std::string(kind) + " " + row.id + " changed since it was read");
        };
        if (e.invoice)
            if (auto ok = written(*e.invoice, "invoice"); !ok) return ok;
        for (auto const& row : e.payments)
            if (auto ok = written(row, "payment"); !ok) return ok;
        seqs.clear();
        for (std::size_t i = 0; i < e.events.size(); ++i) seqs.push_back(results[at++].integer(0, 0));
        at += e.scheduled.size();
        if (new_attempt) epoch = results[at++].integer(0, 0);
        if (e.idempotency && results[at].affected() == 0)
            return reject(ErrorCode::idempotency_key_in_use,
                          "the idempotency key's claim was taken over by another request");
        return {};
    };
    return job;
}

} // namespace

// A commit between its encoding and its answer: kept alive by the caller, or
// by the writer's callback when the caller does not wait.
struct PostgresStore::PendingCommit {
    Changes changes;
    Encoded encoded;
    std::string invoice_id;
    std::vector<std::int64_t> seqs; // the outbox rows of its events, once written
    std::int64_t epoch = 0;         // the lease's, when it commits a new attempt
    std::shared_lock<TokenGate> token; // held from reading the owner until the writer answers
    Job job;
};

Result<std::shared_ptr<PostgresStore::PendingCommit>> PostgresStore::prepare_commit(Changes changes) {
    auto pending = std::make_shared<PendingCommit>();
    Encoded& encoded = pending->encoded;
    encoded = encode(changes);
    // A new attempt is committed with its invoice, which lists it: say why one is not.
    for (auto const& row : encoded.payments) {
        if (row.expected != 0 || (encoded.invoice && encoded.invoice->id == row.invoice_id)) continue;
        auto const counts = impl_->read_or_nothing([&](pg::Connection& c) -> std::optional<std::pair<std::int64_t, std::int64_t>> {
            Rows r = c.query(payment_owner.name, Params().text(row.id).text(row.invoice_id));
            return std::pair{r.integer(0, 0), r.integer(0, 1)};
        });
        if (!counts) return storage_error("PostgreSQL cannot be read");
        if (counts->first != 0) return reject(ErrorCode::already_exists, "payment " + row.id + " already exists");
        if (counts->second == 0) return reject(ErrorCode::not_found, "no invoice " + row.invoice_id);
        return reject(ErrorCode::invalid_argument, "payment " + row.id + " must be committed with its invoice");
    }
    if (changes.idempotency) {
        auto const& [key, outcome, now] = *changes.idempotency;
        std::lock_guard guard(impl_->claims_mutex);
        if (auto it = impl_->running.find(key); it != impl_->running.end()) {
            encoded.idempotency = {key.scope(), key.key(), it->second.first, codec::encode(outcome)};
            encoded.idempotency_since = ticks(now);
        }
    }
    std::optional<std::int64_t> fence;
    pending->invoice_id = encoded.invoice ? encoded.invoice->id
                          : encoded.payments.empty() ? std::string() : encoded.payments.front().invoice_id;
    // What drives an attempt (a payment settled, failed, rerouted) is fenced;
    // a new attempt from a settled invoice (a client's request, a retry) is
    // kept to one by the invoice's version, and takes the lease.
    bool const drives =
        std::any_of(encoded.payments.begin(), encoded.payments.end(), [](Encoded::Row const& row) { return row.expected != 0; });
    if (drives) {
        std::lock_guard guard(impl_->leases_mutex);
        if (auto it = impl_->fences.find(pending->invoice_id); it != impl_->fences.end()) fence = it->second;
    }
    // Until its rows are written under the token it names (and the writer
    // has answered, for an asynchronous commit); a re-registration that holds
    // the token past the statement timeout: unavailable, not a hang.
    // Its events would be held back by this process's bus, without bound, until
    // a renewal tells what it still owns: refused as lease() refuses (review 20, 4).
    if (!impl_->owns_its_work()) {
        ++impl_->storage_errors;
        return storage_error("PostgreSQL: this process's liveness could not be renewed for two thirds of its lease "
                             "timeout (" + ms(impl_->options.lease_timeout) + "); nothing was sent");
    }
    pending->token = std::shared_lock(impl_->token, impl_->options.statement_timeout);
    if (!pending->token) {
        ++impl_->storage_errors;
        return storage_error("PostgreSQL: this process's re-registration held its writes off for the statement timeout (" +
                             ms(impl_->options.statement_timeout) + "); nothing was sent");
    }
    pending->job = commit_job(encoded, impl_->owner, impl_->identity, fence, pending->seqs, pending->epoch);
    pending->changes = std::move(changes);
    return pending;
}

Result<void> PostgresStore::commit(Changes changes) {
    auto pending = prepare_commit(std::move(changes));
    if (!pending) return pending.error();
    return committed(**pending, impl_->submit(std::move((*pending)->job)));
}

void PostgresStore::commit_async(Changes changes, Committed done) {
    bool const client = changes.origin == Changes::Origin::client;
    auto pending = prepare_commit(std::move(changes));
    if (!pending) return done(pending.error());
    auto job = std::make_shared<Job>(std::move((*pending)->job)); // its check refers to `pending`, kept alive below
    using Submitted = GroupCommit<Job>::Submitted;
    auto queued = impl_->queue->submit_async(job, [this, job, pending = *pending, done](Submitted submitted) {
        // Called whatever happens: a throw while updating memory answers as a storage error.
        // Expired (never sent) still goes through committed(): it gives the gate's share back.
        Result<void> answer = reject(ErrorCode::storage_unavailable, "not answered");
        try {
            answer = committed(*pending, submitted == Submitted::written ? job->result : impl_->refused(submitted));
        } catch (std::exception const& e) {
            answer = reject(ErrorCode::storage_unavailable, e.what());
        }
        done(std::move(answer));
    }, client);
    if (queued == GroupCommit<Job>::Submitted::written) return;
    (*pending)->token.unlock();
    done(impl_->refused(queued));
}

// What a commit's answer updates in memory (the leases' fences, the outbox's
// rows, the idempotency claim) before its caller hears it; the token is given
// back once it has.
Result<void> PostgresStore::committed(PendingCommit& pending, Result<void> result) {
    struct Release {
        std::shared_lock<TokenGate>& token;
        ~Release() {
            if (token) token.unlock();
        }
    } release{pending.token};
    if (!result) return result;
    Changes const& changes = pending.changes;
    std::string const& invoice_id = pending.invoice_id;
    if (!invoice_id.empty()) {
        // Nothing is driven once the invoice leaves PROCESSING: forgotten, memory stays bounded.
        std::lock_guard guard(impl_->leases_mutex);
        if (changes.invoice && changes.invoice->invoice.status() != InvoiceStatus::processing) {
            impl_->fences.erase(invoice_id);
            impl_->origins.erase(invoice_id);
        } else if (pending.epoch != 0) {
            // The token's share is held: no re-registration between the owner
            // this commit wrote and the count read here.
            auto const attempt = std::find_if(pending.encoded.payments.begin(), pending.encoded.payments.end(),
                                              [](Encoded::Row const& row) { return row.expected == 0; });
            impl_->fences[invoice_id] = pending.epoch;
            impl_->origins[invoice_id] = {pending.epoch, attempt->id, impl_->reregistrations.load(),
                                          std::chrono::steady_clock::now(), false};
        }
    }
    {
        std::lock_guard guard(impl_->outbox_mutex);
        for (std::size_t i = 0; i < changes.events.size(); ++i)
            impl_->outbox_seq.emplace(envelope_of(changes.events[i]).id, pending.seqs[i]);
        for (auto const& [event, at] : changes.scheduled) impl_->scheduled_ids.insert(envelope_of(event).id);
    }
    if (pending.encoded.idempotency) {
        std::lock_guard guard(impl_->claims_mutex);
        if (auto it = impl_->running.find(changes.idempotency->key); it != impl_->running.end()) it->second.second = true;
    }
    return {};
}

application::OutboxPage PostgresStore::undelivered_page(application::OutboxCursor const& from,
                                                       std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::OutboxPage page;
    impl_->read([&](pg::Connection& c) {
        // The token held until the rows are in outbox_seq: a re-registration
        // in between would not count them among what it lost (review 18, A-2).
        auto const token = impl_->hold_token();
        page = {};
        std::int64_t const through = from.through ? static_cast<std::int64_t>(*from.through)
                                                  : c.query(last_outbox_seq.name, Params()).integer(0, 0);
        Rows r = c.query(select_undelivered.name, Params()
                                                      .text(impl_->owner)
                                                      .integer(static_cast<std::int64_t>(from.after.value_or(0)))
                                                      .integer(through)
                                                      .integer(static_cast<std::int64_t>(limit)));
        std::vector<std::pair<std::int64_t, Event>> rows;
        for (int row = 0; row < r.size(); ++row) rows.emplace_back(r.integer(row, 0), codec::decode_event(r.bytes(row, 1)));
        if (rows.size() == limit)
            page.next = application::OutboxCursor{static_cast<std::uint64_t>(rows.back().first),
                                                  static_cast<std::uint64_t>(through)};
        std::lock_guard guard(impl_->outbox_mutex);
        for (auto& [seq, event] : rows) {
            impl_->outbox_seq.emplace(envelope_of(event).id, seq);
            page.events.push_back(std::move(event));
        }
        return 0;
    });
    return page;
}

void PostgresStore::left_undelivered(EventId const& id) {
    std::lock_guard guard(impl_->outbox_mutex);
    impl_->outbox_seq.erase(id);
    impl_->scheduled_ids.erase(id);
    impl_->forget_lost(id);
}

void PostgresStore::mark_delivered(EventId const& id) {
    std::optional<std::int64_t> seq;
    bool scheduled = false;
    {
        std::lock_guard guard(impl_->outbox_mutex);
        if (auto it = impl_->outbox_seq.find(id); it != impl_->outbox_seq.end()) {
            seq = it->second;
            impl_->outbox_seq.erase(it);
        }
        scheduled = impl_->scheduled_ids.erase(id) != 0;
        // Lost after it passed the filter (a re-registration while its
        // subscribers ran): nothing is left to drop (review 18, A-7).
        impl_->forget_lost(id);
    }
    if (!seq && !scheduled) return;
    std::size_t waiting = 0;
    {
        std::lock_guard guard(impl_->marks_mutex);
        if (seq) impl_->delivered_seqs.push_back(*seq);
        if (scheduled) impl_->delivered_scheduled.emplace_back(id.str());
        waiting = impl_->delivered_seqs.size() + impl_->delivered_scheduled.size();
    }
    // Written with the next commit; when none comes, by a batch of their own
    // once enough have gathered (a lost mark only means a republished event).
    if (waiting >= 256) impl_->queue->flush();
}

application::ScheduledPage PostgresStore::scheduled_page(application::ScheduledCursor const& from,
                                                        std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::ScheduledPage page;
    std::int64_t through = 0;
    page.events = impl_->read([&](pg::Connection& c) {
        auto const token = impl_->hold_token(); // as undelivered_page()
        through = from.through ? static_cast<std::int64_t>(*from.through)
                               : c.query(last_scheduled_seq.name, Params()).integer(0, 0);
        std::vector<application::ScheduledEvent> found;
        Rows r = c.query(select_scheduled.name,
                         Params()
                             .text(impl_->owner)
                             .integer(from.after ? static_cast<std::int64_t>(from.after->at.time_since_epoch().count())
                                                 : std::numeric_limits<std::int64_t>::min())
                             .text(from.after ? from.after->id.str() : std::string_view(""))
                             .integer(through)
                             .integer(static_cast<std::int64_t>(limit)));
        for (int row = 0; row < r.size(); ++row)
            found.push_back({codec::decode_event(r.bytes(row, 1)), Timestamp(Duration(r.integer(row, 0)))});
        std::lock_guard guard(impl_->outbox_mutex);
        for (auto const& [event, at] : found) impl_->scheduled_ids.insert(envelope_of(event).id);
        return found;
    });
    if (page.events.size() == limit)
        page.next = application::ScheduledCursor{{{page.events.back().at, envelope_of(page.events.back().event).id}},
                                                 static_cast<std::uint64_t>(through)};
    return page;
}

application::StartMark PostgresStore::start_mark() const { return impl_->start_mark; }

bool PostgresStore::renew() {
    try {
        impl_->read([&](pg::Connection& c) {
            impl_->renew(c);
            return 0;
        });
        return true;
    } catch (application::StorageFailure const&) {
        return false;
    }
}

bool PostgresStore::renewing() const { return impl_->alive(); }

application::Ownership PostgresStore::still_owns(EventId const& id) {
    // The liveness first, then the lost list: reregister() fills the list
    // before renew() dates the renewal, so an answer that sees the new date
    // also sees the list, and one that sees the old date says doubtful
    // (review 20, 3).
    bool const alive = impl_->owns_its_work();
    if (impl_->options.between_ownership_reads) impl_->options.between_ownership_reads();
    if (impl_->any_lost.load()) {
        std::lock_guard guard(impl_->outbox_mutex);
        bool const lost = impl_->lost.erase(id) != 0; // dropped once: the bus held one copy
        impl_->any_lost = !impl_->lost.empty();
        if (lost) return application::Ownership::lost;
    }
    // No renewal succeeded for two thirds of the lease timeout, or one found
    // the registration lapsed: a survivor may be taking this process's work
    // over now, and the renewal that finds it out (re-registering, and
    // listing what was lost) has not run yet (review 18, A-2).
    if (!alive) return application::Ownership::doubtful;
    return application::Ownership::owned;
}

std::uint64_t PostgresStore::reregistrations() const { return impl_->reregistrations; }

application::TakenOver PostgresStore::take_over(std::size_t event_limit, std::size_t scheduled_limit) {
    // A process that may itself be taken for gone claims nothing (dead_owners
    // asks the database as well): its renewal registers it anew first.
    if (!impl_->owns_its_work() || (event_limit == 0 && scheduled_limit == 0)) return {};
    auto const invoices_most = static_cast<std::int64_t>(event_limit);
    auto const scheduled_most = static_cast<std::int64_t>(scheduled_limit);
    // One transaction: the dead owners, then both claims. A failure anywhere
    // drops the session, which rolls back: nothing is claimed that this
    // process does not know it holds. A reply lost after the COMMIT leaves
    // rows this process owns without knowing: they are taken over by another
    // process once this one is gone.
    std::vector<std::pair<std::int64_t, Event>> events;
    application::TakenOver taken;
    impl_->read([&](pg::Connection& c) {
        events.clear();
        taken.events.clear();
        taken.scheduled.clear();
        // Taken (a pooled session held) as commits take it, and as bounded.
        std::shared_lock token(impl_->token, impl_->options.statement_timeout);
        if (!token) return 0;
        std::string const& me = impl_->owner;
        Rows dead = c.query(dead_owners.name, Params().text(me));
        if (dead.size() == 0) return 0;
        std::vector<std::string> gone;
        for (int row = 0; row < dead.size(); ++row) gone.emplace_back(dead.bytes(row, 0));
        std::string const list = array_literal(gone, quoted_element);
        c.exec("BEGIN");
        if (invoices_most > 0) {
            Rows invoices = c.query(orphan_invoices.name, Params().text(list).integer(invoices_most));
            std::vector<std::string> mine;
            for (int row = 0; row < invoices.size(); ++row) mine.emplace_back(invoices.bytes(row, 0));
            Rows r = c.query(take_events.name, Params().text(me).text(list).text(array_literal(mine, quoted_element)));
            for (int row = 0; row < r.size(); ++row)
                events.emplace_back(r.integer(row, 0), codec::decode_event(r.bytes(row, 1)));
        }
        if (scheduled_most > 0) {
            Rows s = c.query(take_scheduled.name, Params().text(me).text(list).integer(scheduled_most));
            for (int row = 0; row < s.size(); ++row)
                taken.scheduled.push_back({codec::decode_event(s.bytes(row, 1)), Timestamp(Duration(s.integer(row, 0)))});
        }
        c.exec("COMMIT");
        if (impl_->options.after_take_over_commit) impl_->options.after_take_over_commit();
        // Recorded while the token is still held, as undelivered() does: a
        // re-registration cannot run between the claim and this bookkeeping,
        // so what it lists as lost includes these rows (review 20, 6).
        // RETURNING keeps no order.
        std::sort(events.begin(), events.end(), [](auto const& x, auto const& y) { return x.first < y.first; });
        std::sort(taken.scheduled.begin(), taken.scheduled.end(), [](auto const& x, auto const& y) { return x.at < y.at; });
        std::lock_guard guard(impl_->outbox_mutex);
        // Taken back (once lost to a process that is gone now): this process's to deliver again.
        for (auto& [seq, event] : events) {
            impl_->lost.erase(envelope_of(event).id);
            impl_->outbox_seq.emplace(envelope_of(event).id, seq);
            taken.events.push_back(std::move(event));
        }
        for (auto const& [event, at] : taken.scheduled) {
            impl_->lost.erase(envelope_of(event).id);
            impl_->scheduled_ids.insert(envelope_of(event).id);
        }
        impl_->any_lost = !impl_->lost.empty();
        return 0;
    });
    return taken;
}

bool PostgresStore::watch_work_left(std::function<void()> wake) {
    std::lock_guard guard(impl_->wake_mutex);
    impl_->wake = std::move(wake);
    return true;
}

std::vector<Event> PostgresStore::history(InvoiceId const& id) const {
    return impl_->read([&](pg::Connection& c) {
        std::vector<Event> events;
        Rows r = c.query(select_history.name, Params().text(id.str()));
        for (int row = 0; row < r.size(); ++row) events.push_back(codec::decode_event(r.bytes(row, 0)));
        return events;
    });
}

bool PostgresStore::lease(InvoiceId const& id) {
    // Renewals failing: the lease may lapse while a charge is out, so none starts.
    if (!impl_->alive()) return false;
    std::optional<std::int64_t> epoch;
    Job job;
    std::shared_lock token(impl_->token, impl_->options.statement_timeout);
    if (!token) return false; // a re-registration held it off: not ours to drive, for now
    job.statements.emplace_back(take_lease.name, Params().text(id.str()).text(impl_->owner));
    job.check = [&](std::vector<Rows>& results) -> Result<void> {
        if (results[0].size() == 1) epoch = results[0].integer(0, 0);
        return {};
    };
    // PostgreSQL unreachable: not ours to drive, for now.
    if (!impl_->submit(std::move(job)) || !epoch) return false;
    std::lock_guard guard(impl_->leases_mutex);
    impl_->fences[std::string(id.str())] = *epoch;
    return true;
}

// The charge's lease without a round trip through the writer (which held an
// engine thread per charge), for the delivery that follows the attempt's
// commit only: this process's registration has lived without a break since
// it committed `attempt` with the lease (same registration, and alive():
// renewed less than two thirds of a lease timeout ago, so its row outlives
// now), so no other process's take_lease can have found it gone; and no
// lease() since moved the epoch. Another process committing a newer attempt
// moves the lease, but then `attempt` is not the latest, which the caller
// checked, as it would have before a round trip.
//
// Once per attempt, and within a third of a lease of its commit (review 23,
// F1): the inference rests on this process's steady clock keeping pace with
// the database's, which a paused VM or a stepped database clock breaks. A
// late drive of the same attempt (a deferral firing, the janitor, a second
// delivery) asks the database, as lease() always did, so the gap is no wider
// than lease()'s own: a charge in flight outliving the answer.
//
// Not while the writer is behind (review 23, F2): before the fast path a
// drive's lease() queued behind the writer, which paced new charges with it;
// without that, new charges went out while their answers' commits were
// refused past the asynchronous share. The janitor drives the attempt later.
bool PostgresStore::lease_to_drive(InvoiceId const& invoice, PaymentId const& attempt) {
    if (writer_behind(queued(), impl_->options.max_queued)) return false;
    if (!impl_->alive()) return false;
    {
        std::lock_guard guard(impl_->leases_mutex);
        auto const origin = impl_->origins.find(std::string(invoice.str()));
        auto const fence = impl_->fences.find(std::string(invoice.str()));
        if (origin != impl_->origins.end() && fence != impl_->fences.end() && !origin->second.driven &&
            origin->second.attempt == attempt.str() && origin->second.epoch == fence->second &&
            origin->second.registration == impl_->reregistrations.load() &&
            std::chrono::steady_clock::now() - origin->second.committed < impl_->options.lease_timeout / 3) {
            origin->second.driven = true;
            return true;
        }
    }
    return lease(invoice);
}

bool PostgresStore::held_since_attempt(InvoiceId const& id) {
    std::int64_t origin = 0;
    {
        std::lock_guard guard(impl_->leases_mutex);
        auto it = impl_->origins.find(std::string(id.str()));
        if (it == impl_->origins.end()) return false; // not committed by this process
        origin = it->second.epoch;
    }
    auto const epoch = impl_->read_or_nothing([&](pg::Connection& c) -> std::optional<std::int64_t> {
        Rows r = c.query(lease_epoch.name, Params().text(id.str()).text(impl_->current_owner()));
        if (r.size() == 0) return std::nullopt;
        return r.integer(0, 0);
    });
    return epoch == origin; // unreadable: not known to be unbroken
}

application::IdempotencyClaim PostgresStore::claim(IdempotencyKey const& key, std::string_view fingerprint,
                                                   Timestamp now) {
    using State = application::IdempotencyClaim::State;
    {
        // This process's own requests are told apart without a round trip.
        std::lock_guard guard(impl_->claims_mutex);
        auto [it, fresh] = impl_->running.try_emplace(key, std::string(fingerprint), false);
        if (!fresh) return {it->second.first == fingerprint ? State::in_use : State::mismatch, std::nullopt};
    }
    application::IdempotencyClaim answer{State::claimed, std::nullopt};
    Job job;
    job.statements.emplace_back(claim_key.name, Params()
                                                    .text(key.scope())
                                                    .text(key.key())
                                                    .text(fingerprint)
                                                    .text(impl_->identity)
                                                    .integer(ticks(now))
                                                    .integer(ticks(now - impl_->options.idempotency_ttl))
                                                    .integer(ticks(now - impl_->options.idempotency_claim_timeout)));
    job.statements.emplace_back(look_key.name, Params().text(key.scope()).text(key.key()));
    job.check = [&](std::vector<Rows>& results) -> Result<void> {
        Rows const& look = results[1];
        if (results[0].size() == 1) answer = {State::claimed, std::nullopt};
        else if (look.size() == 0) answer = {State::in_use, std::nullopt}; // released between the two: ask again
        else if (look.bytes(0, 0) != fingerprint) answer = {State::mismatch, std::nullopt};
        else if (look.null(0, 1)) answer = {State::in_use, std::nullopt};
        else answer = {State::replay, codec::decode_outcome(look.bytes(0, 1))};
        return {};
    };
    // PostgreSQL unreachable: the claim stands in this process only; the
    // commit that would complete it fails, or (the server back) completes it
    // only where no other process holds the key.
    if (auto claimed = impl_->submit(std::move(job)); !claimed) answer = {State::claimed, std::nullopt};
    if (answer.state != State::claimed) {
        std::lock_guard guard(impl_->claims_mutex);
        impl_->running.erase(key);
    }
    return answer;
}

void PostgresStore::complete(IdempotencyKey const& key, application::PaymentResult outcome, Timestamp now) {
    std::string fingerprint;
    {
        std::lock_guard guard(impl_->claims_mutex);
        auto it = impl_->running.find(key);
        if (it == impl_->running.end()) return;
        if (it->second.second) { // completed by the commit that made the payment
            impl_->running.erase(it);
            return;
        }
        fingerprint = it->second.first;
    }
    Job job;
    job.statements.emplace_back(complete_key.name, Params()
                                                       .text(key.scope())
                                                       .text(key.key())
                                                       .text(fingerprint)
                                                       .text(impl_->identity)
                                                       .integer(ticks(now))
                                                       .bytes(codec::encode(outcome)));
    job.check = [](std::vector<Rows>&) -> Result<void> { return {}; };
    (void)impl_->submit(std::move(job));
    // Written or not (a storage failure), the claim ends: a repeat runs again.
    std::lock_guard guard(impl_->claims_mutex);
    impl_->running.erase(key);
}

void PostgresStore::release(IdempotencyKey const& key) {
    {
        std::lock_guard guard(impl_->claims_mutex);
        if (!impl_->running.contains(key)) return;
    }
    Job job;
    job.statements.emplace_back(release_key.name, Params().text(key.scope()).text(key.key()).text(impl_->identity));
    job.check = [](std::vector<Rows>&) -> Result<void> { return {}; };
    (void)impl_->submit(std::move(job));
    // Forgotten here only once the row is gone, so that a repeat meanwhile is told "in use".
    std::lock_guard guard(impl_->claims_mutex);
    impl_->running.erase(key);
}

std::size_t PostgresStore::purge_expired(Timestamp now) {
    std::int64_t purged = 0;
    Job job;
    job.statements.emplace_back(purge_keys.name, Params().integer(ticks(now - impl_->options.idempotency_ttl)));
    job.check = [&](std::vector<Rows>& results) -> Result<void> {
        purged = results[0].affected();
        return {};
    };
    (void)impl_->submit(std::move(job));
    return static_cast<std::size_t>(purged);
}

std::optional<std::string> PostgresStore::setting(std::string const& name) const {
    return impl_->read_or_nothing([&](pg::Connection& c) -> std::optional<std::string> {
        std::optional<Rows> r;
        try {
            r.emplace(c.query_sql("SELECT current_setting($1)", {name.c_str()}));
        } catch (pg::Failure const&) {
            if (c.broken()) throw;
            return std::nullopt; // no such setting
        }
        if (r->size() != 1) return std::nullopt;
        return std::string(r->bytes(0, 0));
    });
}

std::size_t PostgresStore::queued() const { return impl_->queue->queued(); }
std::uint64_t PostgresStore::transactions() const { return impl_->transactions; }
std::uint64_t PostgresStore::commands() const { return impl_->commands; }
std::uint64_t PostgresStore::storage_errors() const { return impl_->storage_errors + impl_->read_errors; }

} // namespace payments::infrastructure
