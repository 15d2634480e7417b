#include <payments/infrastructure/store/sqlite_store.hpp>

#include "aggregate_cache.hpp"
#include "completion.hpp"
#include "encoded_changes.hpp"
#include "group_commit.hpp"
#include "record_codec.hpp"
#include "sqlite_db.hpp"
#include "sqlite_schema.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <exception>
#include <array>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace payments::infrastructure {

using namespace domain;
using application::Changes;
using application::IdempotencyKey;
using sqlite::Connection;
using sqlite::Statement;

namespace {

Error storage_error(std::string detail) { return reject(ErrorCode::storage_unavailable, std::move(detail)); }

// A write that fails for a reason of the disk or the file, not of the command.
Error storage_error(sqlite::Failure const& failure) {
    return storage_error(std::string("the store cannot write: ") + failure.what());
}

// The lock that keeps a second process off the file: flock() on `<path>.lock`,
// held for the store's life and dropped by the kernel if the process dies.
// SQLite's own locks cannot do it in WAL mode without shutting out the
// store's own read connections (locking_mode=EXCLUSIVE).
class ProcessLock {
public:
    static Result<ProcessLock> take(std::string const& path) {
        int const fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return storage_error("cannot create the lock file " + path);
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd);
            return storage_error("the database is in use by another process (" + path +
                                 " is locked); one process at a time may open it");
        }
        return ProcessLock(fd);
    }
    ProcessLock(ProcessLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    ProcessLock& operator=(ProcessLock&&) = delete;
    ~ProcessLock() {
        if (fd_ >= 0) ::close(fd_);
    }

private:
    explicit ProcessLock(int fd) : fd_(fd) {}
    int fd_;
};

// One unit of work for the writer, applied inside the batch's transaction;
// its caller waits on it alone (completion.hpp), or is called back (`then`)
// on the writer thread.
struct Job : Completion {
    explicit Job(std::function<Result<void>(Connection&)> f, std::function<void(Result<void>)> t = {})
        : apply(std::move(f)), then(std::move(t)) {}
    std::function<Result<void>(Connection&)> apply;
    std::function<void(Result<void>)> then;
    Result<void> result;

    // Answers the caller, once its batch is written (or refused). A callback
    // that throws must neither end the writer (std::terminate) nor leave the
    // rest of its batch unanswered; its caller logs what it could not do
    // (commit_and_publish_async).
    void answer() noexcept {
        if (!then) return finish();
        try {
            std::exchange(then, {})(std::move(result));
        } catch (...) {
        }
    }
};

} // namespace

struct SqliteStore::Impl {
    SqliteStoreOptions options;
    ProcessLock lock;
    std::unique_ptr<Connection> writer; // Owned by: the writer thread, once it runs

    mutable std::mutex readers_mutex;
    mutable std::vector<std::unique_ptr<Connection>> idle_readers; // Owned by: readers_mutex
    mutable std::condition_variable reader_free;
    mutable std::size_t readers_open = 0; // Owned by: readers_mutex

    std::mutex queue_mutex;
    std::condition_variable work;
    bool writer_waiting = false;                   // Owned by: queue_mutex
    std::deque<std::shared_ptr<Job>> queue;        // Owned by: queue_mutex
    std::vector<std::int64_t> delivered_seqs;      // Owned by: queue_mutex; written with the next batch
    std::vector<std::string> delivered_scheduled;  // Owned by: queue_mutex
    bool closing = false;                          // Owned by: queue_mutex
    bool in_doubt = false;                         // Owned by: queue_mutex; a failed COMMIT not yet sealed

    // Outbox and scheduled rows not yet delivered this run: event id → seq.
    std::mutex outbox_mutex;
    std::unordered_map<EventId, std::int64_t> outbox_seq;   // Owned by: outbox_mutex
    std::unordered_map<EventId, bool> scheduled_ids;        // Owned by: outbox_mutex
    application::StartMark start;                           // read at open, then constant

    // Idempotency keys whose request is running: key → (fingerprint, completed by its commit).
    std::mutex claims_mutex;
    std::unordered_map<IdempotencyKey, std::pair<std::string, bool>> running; // Owned by: claims_mutex
    // Keys a claim is reading from the file (outside the mutex): how many
    // claims read each, and how many of its running requests ended (their
    // record written) since; a claim that sees the count move reads again.
    struct Reading {
        int readers = 0;
        std::uint64_t ended = 0;
    };
    std::unordered_map<IdempotencyKey, Reading> reading; // Owned by: claims_mutex

    // A running request's claim ends (claims_mutex held).
    void end_claim(std::unordered_map<IdempotencyKey, std::pair<std::string, bool>>::iterator it) {
        if (auto r = reading.find(it->first); r != reading.end()) ++r->second.ended;
        running.erase(it);
    }

    // Recently committed aggregates, read back without a read transaction.
    AggregateCache<InvoiceId, Invoice> invoice_cache;
    AggregateCache<PaymentId, Payment> payment_cache;

    std::atomic<std::uint64_t> invoices{0}, payments{0}, transactions{0}, commands{0}, storage_errors{0};
    std::uint64_t batches_begun = 0; // Owned by: the writer thread
    mutable std::atomic<std::uint64_t> read_errors{0};
    std::thread writer_thread;

    // The checkpointer copies the WAL back into the file on a thread of its
    // own, so that the writer's commits never wait for that copy and its
    // fsyncs (SQLite's automatic checkpoint runs inside a commit).
    std::mutex checkpoint_mutex;
    std::condition_variable checkpoint_due;
    int wal_frames = 0;           // Owned by: checkpoint_mutex; the WAL's length after the last commit
    bool checkpoint_closing = false; // Owned by: checkpoint_mutex
    std::thread checkpoint_thread;

    // SQLite's quick_check over the whole file, started at open on a thread
    // of its own: it reads every page (seconds for a million invoices), and
    // start-up does not wait for it. A file that fails it twice, a moment
    // apart, refuses writes: a read error that passes (an I/O error, memory,
    // too many open files) is not damage.
    static constexpr auto recheck_after = std::chrono::milliseconds(250);
    std::mutex check_mutex;
    std::condition_variable check_wake;  // close() interrupts the wait between the two checks
    sqlite3* checking = nullptr;         // Owned by: check_mutex; interrupted at close
    bool check_closing = false;          // Owned by: check_mutex
    IntegrityCheck integrity = IntegrityCheck::running; // Owned by: check_mutex
    std::optional<std::string> damage;   // Owned by: check_mutex; the check's verdict when damaged
    std::thread check_thread;

    // One quick_check: "ok", what it found, or nullopt when close interrupted it.
    std::optional<std::string> check_once() {
        // Declared outside the try: the connection outlives `checking`, which
        // close() may interrupt until it is cleared under the lock.
        std::unique_ptr<Connection> c;
        std::string verdict;
        try {
            c = open_connection();
            {
                std::lock_guard guard(check_mutex);
                if (check_closing) return std::nullopt;
                checking = c->get();
            }
            Statement& check = c->prepare("PRAGMA quick_check");
            verdict = check.step() ? std::string(check.text(0)) : "no answer";
            c->finish();
        } catch (sqlite::Failure const& failure) {
            verdict = failure.what();
        }
        std::lock_guard guard(check_mutex);
        checking = nullptr;
        if (check_closing) return std::nullopt; // interrupted: no verdict
        return verdict;
    }

    void run_integrity_check() {
        for (int round = 1;; ++round) {
            std::optional<std::string> const verdict = check_once();
            std::unique_lock guard(check_mutex);
            if (!verdict) {
                integrity = IntegrityCheck::not_run;
                return;
            }
            if (*verdict == "ok") {
                integrity = IntegrityCheck::passed;
                return;
            }
            if (round == 2) {
                damage = options.path + " fails SQLite's integrity check: " + *verdict + "; writes are refused";
                integrity = IntegrityCheck::damaged;
                ++storage_errors; // after the verdict is recorded: a reader of the count sees it
                return;
            }
            ++storage_errors;
            if (check_wake.wait_for(guard, recheck_after, [&] { return check_closing; })) {
                integrity = IntegrityCheck::not_run;
                return;
            }
        }
    }

    std::optional<std::string> damaged() {
        std::lock_guard guard(check_mutex);
        return damage;
    }

    // After each commit (SQLite's WAL hook, on the writer thread).
    static int on_wal_commit(void* self, sqlite3*, char const*, int frames) {
        auto* impl = static_cast<Impl*>(self);
        {
            std::lock_guard guard(impl->checkpoint_mutex);
            impl->wal_frames = frames;
        }
        if (frames >= checkpoint_frames) impl->checkpoint_due.notify_one();
        return SQLITE_OK;
    }
    static constexpr int checkpoint_frames = 1000; // SQLite's own default threshold

    void run_checkpointer() {
        std::unique_ptr<Connection> c;
        std::unique_lock guard(checkpoint_mutex);
        for (;;) {
            checkpoint_due.wait(guard, [&] { return checkpoint_closing || wal_frames >= checkpoint_frames; });
            if (checkpoint_closing) return;
            wal_frames = 0;
            guard.unlock();
            try {
                if (!c) {
                    c = std::make_unique<Connection>(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, options.vfs);
                    configure(*c);
                }
                // PASSIVE: copies what no reader still needs, never waits for the writer.
                int const rc = sqlite3_wal_checkpoint_v2(c->get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
                if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
                    ++storage_errors;
                    c.reset(); // tried again at the next commit's threshold
                }
            } catch (sqlite::Failure const&) {
                ++storage_errors;
                c.reset();
            }
            guard.lock();
        }
    }

    Impl(SqliteStoreOptions o, ProcessLock l)
        : options(std::move(o)), lock(std::move(l)), invoice_cache(options.cached_aggregates),
          payment_cache(options.cached_aggregates) {}

    // An aggregate from the cache, or read from the file and kept.
    template <class Cache, class Read>
    auto cached(Cache& cache, auto const& id, Read&& from_file) const -> decltype(from_file(std::declval<Connection&>())) {
        if (auto hit = cache.find(id)) return hit;
        auto const since = cache.stamp();
        auto found = read(std::forward<Read>(from_file));
        if (found) cache.fill(id, *found, since);
        return found;
    }

    // temp_store=MEMORY: the journal of the savepoint each command runs in
    // stays in memory (emptied at each RELEASE) instead of spilling past 64 KiB
    // to a temporary file that every later command writes to: a third of the
    // writer's time per batch (docs/performance.md). It only serves ROLLBACK
    // TO; durability is the WAL's, unchanged.
    void configure(Connection& c) const {
        c.exec(("PRAGMA busy_timeout=5000; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-" +
                std::to_string(options.cache_kib) + ";")
                   .c_str());
    }

    std::unique_ptr<Connection> open_connection() const {
        auto c = std::make_unique<Connection>(options.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, options.vfs);
        configure(*c);
        c->exec("PRAGMA query_only=1;");
        return c;
    }

    // Runs `read` on a read connection; an SQLite error or a record that does
    // not decode is thrown as application::StorageFailure, never answered as
    // "nothing there".
    template <class F>
    auto read(F&& f) const -> decltype(f(std::declval<Connection&>())) {
        std::unique_ptr<Connection> c;
        {
            std::unique_lock guard(readers_mutex);
            reader_free.wait(guard, [&] { return !idle_readers.empty() || readers_open < options.readers; });
            if (!idle_readers.empty()) {
                c = std::move(idle_readers.back());
                idle_readers.pop_back();
            } else {
                ++readers_open;
            }
        }
        struct Return {
            Impl const& impl;
            std::unique_ptr<Connection>& c;
            ~Return() {
                std::lock_guard guard(impl.readers_mutex);
                if (c) impl.idle_readers.push_back(std::move(c));
                else --impl.readers_open;
                impl.reader_free.notify_one();
            }
        } give_back{*this, c};
        // The connection is dropped in case it is the broken part, and the
        // failure counted.
        try {
            if (!c) c = open_connection();
            auto result = f(*c);
            c->finish();
            return result;
        } catch (std::exception const& failure) {
            ++read_errors;
            c.reset();
            throw application::StorageFailure(std::string("the store cannot read: ") + failure.what());
        }
    }

    Result<void> submit(std::function<Result<void>(Connection&)> apply) {
        auto job = std::make_shared<Job>(std::move(apply));
        if (auto queued = enqueue(job); !queued) return queued;
        job->wait();
        return job->result;
    }

    // Queues `apply`; `then` runs on the writer thread once it is written,
    // or at once on this thread if it is refused before it is queued.
    // A client's command (`client`) is refused past client_share(), a settlement past async_share().
    void submit_async(std::function<Result<void>(Connection&)> apply, std::function<void(Result<void>)> then,
                      bool client = false) {
        auto job = std::make_shared<Job>(std::move(apply));
        auto queued = enqueue(job, &then, client);
        if (!queued) then(std::move(queued));
    }

    // Queues the job (`then`, if given, moves into it once it is queued).
    Result<void> enqueue(std::shared_ptr<Job> const& job, std::function<void(Result<void>)>* then = nullptr,
                         bool client = false) {
        if (auto verdict = damaged()) return storage_error(*verdict);
        std::lock_guard guard(queue_mutex);
        if (closing) return reject(ErrorCode::unavailable, "the store is closed");
        if (in_doubt) return storage_error(deciding);
        // A writer that is behind refuses past the bound, and settlements
        // (which do not wait) leave a quarter of it to the requests that do.
        if (std::size_t const most = !then    ? options.max_queued
                                     : client ? client_share(options.max_queued)
                                              : async_share(options.max_queued);
            options.max_queued != 0 && queue.size() >= most)
            return storage_error("SQLite's writer is behind: " + std::to_string(queue.size()) +
                                 " commands wait for it already");
        if (then) job->then = std::move(*then);
        queue.push_back(job);
        if (writer_waiting) work.notify_one();
        return {};
    }

    static constexpr auto in_doubt_wait = std::chrono::seconds(2);
    static constexpr char const* deciding =
        "the store cannot write: the outcome of an earlier commit whose fsync failed is not decided yet";

    void run_writer();
    // True when the COMMIT itself failed: the batch's outcome is in doubt.
    bool write_batch(std::vector<std::shared_ptr<Job>>& batch, std::vector<std::int64_t>& seqs,
                     std::vector<std::string>& scheduled);
    void decide(std::vector<std::shared_ptr<Job>>& batch);
    bool seal();
    void end_transaction() {
        if (sqlite3_get_autocommit(writer->get())) return;
        try {
            writer->exec("ROLLBACK");
        } catch (sqlite::Failure const&) {
            // The rollback failed too: SQLite rolls back on its own when the
            // connection next begins; nothing of this transaction was committed.
        }
    }
};

void SqliteStore::Impl::run_writer() {
    std::vector<std::shared_ptr<Job>> batch;
    std::vector<std::int64_t> seqs;
    std::vector<std::string> scheduled;
    for (;;) {
        {
            std::unique_lock guard(queue_mutex);
            writer_waiting = true;
            work.wait(guard, [&] { return !queue.empty() || closing; });
            writer_waiting = false;
            if (queue.empty() && closing && delivered_seqs.empty() && delivered_scheduled.empty()) return;
            std::size_t const most = options.group_commit ? options.max_batch : 1;
            while (!queue.empty() && batch.size() < most) {
                batch.push_back(std::move(queue.front()));
                queue.pop_front();
            }
            seqs.swap(delivered_seqs);
            scheduled.swap(delivered_scheduled);
        }
        if (write_batch(batch, seqs, scheduled)) decide(batch);
        for (auto& job : batch) job->answer();
        batch.clear();
        seqs.clear();
        scheduled.clear();
    }
}

// One transaction: every job in a savepoint of its own, the recorded
// deliveries, one COMMIT (one fsync). A job's business refusal rolls back its
// savepoint alone; a storage failure fails the whole batch, and nothing of it
// is answered as done.
bool SqliteStore::Impl::write_batch(std::vector<std::shared_ptr<Job>>& batch, std::vector<std::int64_t>& seqs,
                                    std::vector<std::string>& scheduled) {
    Connection& c = *writer;
    bool committing = false;
    try {
        // Prepared once (sqlite3_exec would parse them again for every command).
        c.prepare("BEGIN IMMEDIATE").step();
        for (auto& job : batch) {
            c.prepare("SAVEPOINT command").step();
            job->result = job->apply(c);
            c.finish();
            if (!job->result) c.prepare("ROLLBACK TO command").step();
            c.prepare("RELEASE command").step();
        }
        for (std::int64_t seq : seqs) c.prepare("UPDATE outbox SET delivered = 1 WHERE seq = ?").bind(1, seq).step();
        for (auto const& id : scheduled) c.prepare("DELETE FROM scheduled WHERE event_id = ?").bind(1, id).step();
        // Counted by batches begun, so that a run of failing batches does not run it each time.
        if (options.event_retention && batches_begun++ % 1024 == 0) {
            auto const oldest = ticks(std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now()) - *options.event_retention);
            // The newest row stays: the outbox is numbered by a plain rowid,
            // the largest left plus one, so a new row is never numbered at or
            // below one that existed, the start's bound included (review 22, G2).
            c.prepare("DELETE FROM outbox WHERE delivered = 1 AND occurred_at < ? "
                      "AND seq < (SELECT max(seq) FROM outbox)")
                .bind(1, oldest)
                .step();
        }
        committing = true;
        c.prepare("COMMIT").step();
        ++transactions;
        commands += batch.size();
        return false;
    } catch (sqlite::Failure const& failure) {
        ++storage_errors;
        end_transaction();
        for (auto& job : batch) job->result = storage_error(failure);
        // The delivered marks are only hints: lost, the events are republished.
        // A write that failed left no whole commit frame: only an fsync's failure leaves the batch in doubt.
        return committing && (failure.code == SQLITE_IOERR_FSYNC || failure.code == SQLITE_IOERR_DIR_FSYNC);
    }
}

// A COMMIT that failed at its fsync has every frame of the batch, the commit
// frame included, in the WAL: SQLite forgets them, but a restart would replay
// them, so "nothing kept" would be a guess. The guess is made true before it
// is answered: a later durable commit (the seal) is written over those frames
// and ends their chain. Until one succeeds, new commands are refused at once;
// the batch waits for it up to `in_doubt_wait`, then is answered that its
// outcome is not known yet. A close before the seal leaves it to the next start.
void SqliteStore::Impl::decide(std::vector<std::shared_ptr<Job>>& batch) {
    {
        std::lock_guard guard(queue_mutex);
        in_doubt = true;
    }
    auto const answer = [](std::vector<std::shared_ptr<Job>>& jobs, std::string const& detail) {
        for (auto& job : jobs) {
            job->result = storage_error(detail);
            job->answer();
        }
        jobs.clear();
    };
    auto const give_up = std::chrono::steady_clock::now() + in_doubt_wait;
    auto wait = std::chrono::milliseconds(10);
    while (!seal()) {
        std::deque<std::shared_ptr<Job>> refused;
        bool closed = false;
        {
            std::unique_lock guard(queue_mutex);
            work.wait_for(guard, wait, [&] { return closing; });
            refused.swap(queue);
            closed = closing;
        }
        std::vector<std::shared_ptr<Job>> refused_jobs(refused.begin(), refused.end());
        answer(refused_jobs, deciding);
        if (closed) {
            answer(batch, "the store closed before the outcome of a commit whose fsync failed was decided; "
                          "the next start decides it");
            return;
        }
        if (!batch.empty() && std::chrono::steady_clock::now() >= give_up)
            answer(batch, "the store cannot write: a commit's fsync failed, and whether it is kept is not known "
                          "until the store can write again (or the next start); retry with the same idempotency key");
        wait = std::min(wait * 2, std::chrono::milliseconds(1000));
    }
    std::lock_guard guard(queue_mutex);
    in_doubt = false;
}

bool SqliteStore::Impl::seal() {
    try {
        writer->prepare("BEGIN IMMEDIATE").step();
        writer->prepare("UPDATE seal SET n = n + 1").step();
        writer->prepare("COMMIT").step();
        return true;
    } catch (sqlite::Failure const&) {
        ++storage_errors;
        end_transaction();
        return false;
    }
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
    sqlite3_wal_hook(impl_->writer->get(), &Impl::on_wal_commit, impl_.get());
    impl_->checkpoint_thread = std::thread([impl = impl_.get()] { impl->run_checkpointer(); });
    impl_->writer_thread = std::thread([impl = impl_.get()] { impl->run_writer(); });
    impl_->check_thread = std::thread([impl = impl_.get()] { impl->run_integrity_check(); });
}

SqliteStore::~SqliteStore() { close(); }

void SqliteStore::close() {
    {
        std::lock_guard guard(impl_->queue_mutex);
        if (impl_->closing) return;
        impl_->closing = true;
    }
    {
        std::lock_guard guard(impl_->check_mutex);
        impl_->check_closing = true;
        if (impl_->checking) sqlite3_interrupt(impl_->checking);
    }
    impl_->check_wake.notify_all();
    if (impl_->check_thread.joinable()) impl_->check_thread.join();
    impl_->work.notify_all();
    if (impl_->writer_thread.joinable()) impl_->writer_thread.join();
    {
        std::lock_guard guard(impl_->checkpoint_mutex);
        impl_->checkpoint_closing = true;
    }
    impl_->checkpoint_due.notify_one();
    if (impl_->checkpoint_thread.joinable()) impl_->checkpoint_thread.join();
    impl_->writer.reset();
    std::lock_guard guard(impl_->readers_mutex);
    impl_->idle_readers.clear();
}

namespace {

int user_version(Connection& c) {
    Statement& s = c.prepare("PRAGMA user_version");
    s.step();
    auto const version = static_cast<int>(s.integer(0));
    c.finish();
    return version;
}

constexpr char const* last_outbox_row = "SELECT coalesce(max(seq), 0) FROM outbox";
constexpr char const* last_scheduled_row = "SELECT coalesce(max(seq), 0) FROM scheduled";

// The number of a table's last row (0: none), by one of the two queries above.
std::uint64_t last_seq(Connection& c, char const* query) {
    Statement& s = c.prepare(query);
    s.step();
    return static_cast<std::uint64_t>(s.integer(0));
}

// Review 21, F7: an invoice written before schema 4 names no attempt under
// review (review_of ''), so a janitor's round reads its UNKNOWN attempt until
// the invoice is written again. Filled in at open, after the migrations, a
// page to a transaction (at its version: a row written meanwhile has it
// already). A record that does not decode is left as it was: read as before
// (the integrity check reports it).
void backfill_review_of(Connection& c) {
    std::int64_t after = 0;
    for (;;) {
        struct Row {
            std::string id;
            std::int64_t version;
            std::string review_of;
        };
        std::vector<Row> rows;
        Statement& s = c.prepare("SELECT seq, id, version, body FROM invoices WHERE status = 4 AND review_of = '' "
                                 "AND seq > ? ORDER BY seq LIMIT 256");
        s.bind(1, after);
        std::size_t read = 0;
        while (s.step()) {
            ++read;
            after = s.integer(0);
            try {
                Invoice const invoice = codec::decode_invoice(s.bytes(3));
                if (!invoice.under_review().str().empty())
                    rows.push_back({std::string(s.text(1)), s.integer(2), std::string(invoice.under_review().str())});
            } catch (std::exception const&) {
            }
        }
        c.finish();
        if (read == 0) return;
        if (rows.empty()) continue;
        c.exec("BEGIN IMMEDIATE");
        for (auto const& row : rows)
            c.prepare("UPDATE invoices SET review_of = ? WHERE id = ? AND version = ?")
                .bind(1, row.review_of)
                .bind(2, row.id)
                .bind(3, row.version)
                .step();
        c.exec("COMMIT");
    }
}

// WAL, durability, schema: everything a file must pass to be opened.
Result<void> prepare_file(Connection& c, SqliteStoreOptions const& options) {
    // The header and the schema are read here (a file that is not a database
    // fails at once); the whole file is checked on a thread of its own.
    c.prepare("SELECT count(*) FROM sqlite_schema").step();
    c.finish();
    Statement& wal = c.prepare("PRAGMA journal_mode=WAL");
    std::string const mode = wal.step() ? std::string(wal.text(0)) : "";
    c.finish();
    if (mode != "wal") return storage_error(options.path + " cannot be put in WAL mode");
    c.exec(options.fsync_every_commit ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    int const version = user_version(c);
    if (version > SqliteStore::schema_version)
        return storage_error(options.path + " has schema version " + std::to_string(version) +
                             ", newer than this release reads (" + std::to_string(SqliteStore::schema_version) +
                             "); run the release that wrote it");
    for (int v = version; v < SqliteStore::schema_version; ++v) {
        c.exec("BEGIN IMMEDIATE");
        c.exec(sqlite::migrations[static_cast<std::size_t>(v)]);
        c.exec(("PRAGMA user_version=" + std::to_string(v + 1)).c_str());
        c.exec("COMMIT");
    }
    return {};
}

} // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(SqliteStoreOptions options) {
    namespace fs = std::filesystem;
    fs::path const file(options.path);
    fs::path const directory = file.has_parent_path() ? file.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(directory, ec))
        return storage_error("the directory of " + options.path + " does not exist; create it first");
    auto lock = ProcessLock::take(options.path + ".lock");
    if (!lock) return lock.error();
    auto impl = std::make_unique<Impl>(std::move(options), std::move(*lock));
    SqliteStoreOptions const& o = impl->options;
    try {
        impl->writer =
            std::make_unique<Connection>(o.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, o.vfs);
        impl->configure(*impl->writer);
        if (auto ready = prepare_file(*impl->writer, o); !ready) return ready.error();
        try {
            backfill_review_of(*impl->writer);
        } catch (sqlite::Failure const&) {
            // A page that cannot be read (the integrity check reports it): those rows are read as before.
            if (sqlite3_get_autocommit(impl->writer->get()) == 0) impl->writer->exec("ROLLBACK");
            impl->writer->finish();
        }
        Statement& invoices = impl->writer->prepare("SELECT count(*) FROM invoices");
        invoices.step();
        impl->invoices = static_cast<std::uint64_t>(invoices.integer(0));
        impl->writer->finish();
        Statement& payments = impl->writer->prepare("SELECT count(*) FROM payments");
        payments.step();
        impl->payments = static_cast<std::uint64_t>(payments.integer(0));
        impl->writer->finish();
        // Where the start's passes end: what an earlier run left (review 21, F6).
        impl->start = {last_seq(*impl->writer, last_outbox_row), last_seq(*impl->writer, last_scheduled_row)};
        impl->writer->finish();
    } catch (sqlite::Failure const& failure) {
        if ((failure.code & 0xff) == SQLITE_NOTADB)
            return storage_error(o.path + " is not an SQLite database");
        return storage_error("cannot open " + o.path + ": " + failure.what());
    }
    return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

std::optional<Invoice> SqliteStore::invoice(InvoiceId const& id) const {
    return impl_->cached(impl_->invoice_cache, id, [&](Connection& c) -> std::optional<Invoice> {
        Statement& s = c.prepare("SELECT body FROM invoices WHERE id = ?");
        if (!s.bind(1, id.str()).step()) return std::nullopt;
        return codec::decode_invoice(s.bytes(0));
    });
}

application::InvoicePage SqliteStore::invoices(application::InvoiceQuery const& query) const {
    return impl_->read([&](Connection& c) {
        application::InvoicePage page;
        std::int64_t after = 0;
        if (query.after) {
            Statement& s = c.prepare("SELECT seq FROM invoices WHERE id = ?");
            if (!s.bind(1, query.after->str()).step()) return page;
            after = s.integer(0);
        }
        auto const limit = static_cast<std::int64_t>(query.limit) + 1;
        Statement& s = query.status
                           ? c.prepare("SELECT body FROM invoices WHERE status = ? AND seq > ? ORDER BY seq LIMIT ?")
                                 .bind(1, static_cast<std::int64_t>(*query.status))
                                 .bind(2, after)
                                 .bind(3, limit)
                           : c.prepare("SELECT body FROM invoices WHERE seq > ? ORDER BY seq LIMIT ?")
                                 .bind(1, after)
                                 .bind(2, limit);
        while (s.step()) {
            if (page.data.size() == query.limit) {
                page.next = page.data.back().id();
                break;
            }
            page.data.push_back(codec::decode_invoice(s.bytes(0)));
        }
        return page;
    });
}

std::optional<Payment> SqliteStore::payment(PaymentId const& id) const {
    return impl_->cached(impl_->payment_cache, id, [&](Connection& c) -> std::optional<Payment> {
        Statement& s = c.prepare("SELECT body FROM payments WHERE id = ?");
        if (!s.bind(1, id.str()).step()) return std::nullopt;
        return codec::decode_payment(s.bytes(0));
    });
}

std::vector<Payment> SqliteStore::payments_of(InvoiceId const& id) const {
    return impl_->read([&](Connection& c) {
        std::vector<Payment> result;
        Statement& s = c.prepare("SELECT body FROM payments WHERE invoice_id = ? ORDER BY attempt");
        s.bind(1, id.str());
        while (s.step()) result.push_back(codec::decode_payment(s.bytes(0)));
        return result;
    });
}

application::OpenAttemptPage SqliteStore::open_attempts(std::optional<PaymentId> const& after,
                                                        std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::OpenAttemptPage page;
    page.data = impl_->read([&](Connection& c) {
        std::vector<application::OpenAttempt> found;
        // payments_open holds the REQUESTED (0) and UNKNOWN (3) attempts; invoices PROCESSING (1) or NEEDS_REVIEW (4).
        Statement& s = c.prepare("SELECT i.body, p.body FROM payments p JOIN invoices i ON i.id = p.invoice_id "
                                 "WHERE p.status IN (0, 3) AND p.id > ? AND i.status IN (1, 4) "
                                 "AND NOT (p.status = 3 AND i.status = 4 AND i.review_of = p.id) "
                                 "ORDER BY p.id LIMIT ?");
        s.bind(1, after ? after->str() : std::string_view("")).bind(2, static_cast<std::int64_t>(limit));
        while (s.step()) found.push_back({codec::decode_invoice(s.bytes(0)), codec::decode_payment(s.bytes(1))});
        return found;
    });
    if (page.data.size() == limit) page.next = page.data.back().payment.id();
    return page;
}

namespace {

// The invoice row of a commit: inserted new, or updated at its version.
Result<void> write_invoice(Connection& c, Encoded::Row const& row) {
    if (row.expected == 0) {
        bool violated = false;
        c.prepare("INSERT INTO invoices (id, status, version, body, review_of) VALUES (?, ?, ?, ?, ?)")
            .bind(1, row.id)
            .bind(2, row.status)
            .bind(3, static_cast<std::int64_t>(row.version))
            .bind_blob(4, row.body)
            .bind(5, row.review_of)
            .step_unless_constraint(violated);
        if (violated) return reject(ErrorCode::already_exists, "invoice " + row.id + " already exists");
        return {};
    }
    c.prepare("UPDATE invoices SET status = ?, version = ?, body = ?, review_of = ? WHERE id = ? AND version = ?")
        .bind(1, row.status)
        .bind(2, static_cast<std::int64_t>(row.version))
        .bind_blob(3, row.body)
        .bind(4, row.review_of)
        .bind(5, row.id)
        .bind(6, static_cast<std::int64_t>(row.expected))
        .step();
    if (c.changes() == 0) return reject(ErrorCode::conflict, "invoice " + row.id + " changed since it was read");
    return {};
}

Result<void> write_payment(Connection& c, Encoded::Row const& row, std::optional<Encoded::Row> const& invoice) {
    Statement& found = c.prepare("SELECT version, invoice_id FROM payments WHERE id = ?");
    bool const exists = found.bind(1, row.id).step();
    if (row.expected == 0) {
        if (exists) return reject(ErrorCode::already_exists, "payment " + row.id + " already exists");
        // A new attempt is committed with its invoice, which lists it.
        if (!(invoice && invoice->id == row.invoice_id)) {
            Statement& owner = c.prepare("SELECT 1 FROM invoices WHERE id = ?");
            if (!owner.bind(1, row.invoice_id).step())
                return reject(ErrorCode::not_found, "no invoice " + row.invoice_id);
            return reject(ErrorCode::invalid_argument, "payment " + row.id + " must be committed with its invoice");
        }
        c.prepare("INSERT INTO payments (id, invoice_id, attempt, status, version, body) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(1, row.id)
            .bind(2, row.invoice_id)
            .bind(3, row.attempt)
            .bind(4, row.status)
            .bind(5, static_cast<std::int64_t>(row.version))
            .bind_blob(6, row.body)
            .step();
        return {};
    }
    if (!exists || static_cast<std::uint64_t>(found.integer(0)) != row.expected)
        return reject(ErrorCode::conflict, "payment " + row.id + " changed since it was read");
    if (found.text(1) != row.invoice_id)
        return reject(ErrorCode::invalid_argument, "payment " + row.id + " changed invoice");
    c.prepare("UPDATE payments SET status = ?, version = ?, body = ? WHERE id = ?")
        .bind(1, row.status)
        .bind(2, static_cast<std::int64_t>(row.version))
        .bind_blob(3, row.body)
        .bind(4, row.id)
        .step();
    return {};
}

} // namespace

// A commit between its encoding and its answer: kept alive by the caller, or
// by the writer's callback when the caller does not wait.
struct SqliteStore::PendingCommit {
    Changes changes;
    Encoded encoded;
    std::vector<std::int64_t> seqs; // the outbox rows of its events, once written
};

std::shared_ptr<SqliteStore::PendingCommit> SqliteStore::prepare_commit(Changes changes) {
    auto pending = std::make_shared<PendingCommit>();
    pending->encoded = encode(changes);
    if (changes.idempotency) {
        auto const& [key, outcome, now] = *changes.idempotency;
        std::lock_guard guard(impl_->claims_mutex);
        if (auto it = impl_->running.find(key); it != impl_->running.end()) {
            pending->encoded.idempotency = {key.scope(), key.key(), it->second.first, codec::encode(outcome)};
            pending->encoded.idempotency_since = ticks(now);
        }
    }
    pending->changes = std::move(changes);
    return pending;
}

namespace {

// The statements of one commit, run in its savepoint by the writer.
std::function<Result<void>(Connection&)> commit_statements(Encoded const& encoded, std::vector<std::int64_t>& seqs) {
    return [&encoded, &seqs](Connection& c) -> Result<void> {
        seqs.clear();
        if (encoded.invoice)
            if (auto ok = write_invoice(c, *encoded.invoice); !ok) return ok;
        for (auto const& row : encoded.payments)
            if (auto ok = write_payment(c, row, encoded.invoice); !ok) return ok;
        for (auto const& event : encoded.events) {
            c.prepare("INSERT INTO outbox (event_id, invoice_id, occurred_at, body) VALUES (?, ?, ?, ?)")
                .bind(1, event.id)
                .bind(2, event.invoice_id)
                .bind(3, event.at)
                .bind_blob(4, event.body)
                .step();
            seqs.push_back(c.last_rowid());
        }
        for (auto const& event : encoded.scheduled)
            c.prepare("INSERT OR REPLACE INTO scheduled (event_id, due, body) VALUES (?, ?, ?)")
                .bind(1, event.id)
                .bind(2, event.at)
                .bind_blob(3, event.body)
                .step();
        if (encoded.idempotency) {
            auto const& [scope, key, fingerprint, outcome] = *encoded.idempotency;
            c.prepare("INSERT OR REPLACE INTO idempotency (scope, key, fingerprint, since, outcome) VALUES (?, ?, ?, ?, ?)")
                .bind(1, scope)
                .bind(2, key)
                .bind(3, fingerprint)
                .bind(4, encoded.idempotency_since)
                .bind_blob(5, outcome)
                .step();
        }
        return {};
    };
}

} // namespace

Result<void> SqliteStore::commit(Changes changes) {
    auto pending = prepare_commit(std::move(changes));
    return committed(*pending, impl_->submit(commit_statements(pending->encoded, pending->seqs)));
}

void SqliteStore::commit_async(Changes changes, Committed done) {
    bool const client = changes.origin == Changes::Origin::client;
    auto pending = prepare_commit(std::move(changes));
    auto statements = commit_statements(pending->encoded, pending->seqs); // `pending` outlives the job
    impl_->submit_async(
        std::move(statements),
        [this, pending, done = std::move(done)](Result<void> result) {
            // Called whatever happens: a throw while updating memory answers as a storage error.
            Result<void> answer = reject(ErrorCode::storage_unavailable, "not answered");
            try {
                answer = committed(*pending, std::move(result));
            } catch (std::exception const& e) {
                answer = reject(ErrorCode::storage_unavailable, e.what());
            }
            done(std::move(answer));
        },
        client);
}

// What a commit's answer updates in memory (the caches, the outbox's rows,
// the idempotency claim) before its caller hears it.
Result<void> SqliteStore::committed(PendingCommit& pending, Result<void> result) {
    Changes const& changes = pending.changes;
    Encoded const& encoded = pending.encoded;
    if (!result) {
        // Refused (a conflict most often): the next read of these goes to the file.
        if (changes.invoice) impl_->invoice_cache.drop(changes.invoice->invoice.id());
        for (auto const& write : changes.payments) impl_->payment_cache.drop(write.payment.id());
        return result;
    }
    if (changes.invoice) impl_->invoice_cache.write_through(changes.invoice->invoice.id(), changes.invoice->invoice);
    for (auto const& write : changes.payments) impl_->payment_cache.write_through(write.payment.id(), write.payment);
    if (encoded.invoice && encoded.invoice->expected == 0) ++impl_->invoices;
    for (auto const& row : encoded.payments)
        if (row.expected == 0) ++impl_->payments;
    {
        std::lock_guard guard(impl_->outbox_mutex);
        for (std::size_t i = 0; i < changes.events.size(); ++i)
            impl_->outbox_seq.emplace(envelope_of(changes.events[i]).id, pending.seqs[i]);
        for (auto const& [event, at] : changes.scheduled) impl_->scheduled_ids.emplace(envelope_of(event).id, true);
    }
    if (encoded.idempotency) {
        std::lock_guard guard(impl_->claims_mutex);
        if (auto it = impl_->running.find(changes.idempotency->key); it != impl_->running.end()) it->second.second = true;
    }
    return {};
}

application::OutboxPage SqliteStore::undelivered_page(application::OutboxCursor const& from, std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::OutboxPage page;
    std::vector<std::pair<std::int64_t, Event>> rows;
    std::int64_t through = 0;
    impl_->read([&](Connection& c) {
        if (from.through) {
            through = static_cast<std::int64_t>(*from.through);
        } else {
            through = static_cast<std::int64_t>(last_seq(c, last_outbox_row));
        }
        Statement& s = c.prepare("SELECT seq, body FROM outbox WHERE delivered = 0 AND seq > ? AND seq <= ? "
                                 "ORDER BY seq LIMIT ?");
        s.bind(1, static_cast<std::int64_t>(from.after.value_or(0)));
        s.bind(2, through);
        s.bind(3, static_cast<std::int64_t>(limit));
        while (s.step()) rows.emplace_back(s.integer(0), codec::decode_event(s.bytes(1)));
        return 0;
    });
    if (rows.size() == limit)
        page.next = application::OutboxCursor{static_cast<std::uint64_t>(rows.back().first),
                                              static_cast<std::uint64_t>(through)};
    std::lock_guard guard(impl_->outbox_mutex);
    for (auto& [seq, event] : rows) {
        impl_->outbox_seq.emplace(envelope_of(event).id, seq);
        page.events.push_back(std::move(event));
    }
    return page;
}

void SqliteStore::left_undelivered(EventId const& id) {
    std::lock_guard guard(impl_->outbox_mutex);
    impl_->outbox_seq.erase(id);
    impl_->scheduled_ids.erase(id);
}

void SqliteStore::mark_delivered(EventId const& id) {
    std::optional<std::int64_t> seq;
    bool scheduled = false;
    {
        std::lock_guard guard(impl_->outbox_mutex);
        if (auto it = impl_->outbox_seq.find(id); it != impl_->outbox_seq.end()) {
            seq = it->second;
            impl_->outbox_seq.erase(it);
        }
        scheduled = impl_->scheduled_ids.erase(id) != 0;
    }
    if (!seq && !scheduled) return;
    std::lock_guard guard(impl_->queue_mutex);
    if (seq) impl_->delivered_seqs.push_back(*seq);
    if (scheduled) impl_->delivered_scheduled.emplace_back(id.str());
    // Written with the next commit; when none comes, by a batch of its own
    // once enough have gathered (a lost mark only means a republished event).
    if (impl_->delivered_seqs.size() + impl_->delivered_scheduled.size() >= 256) {
        impl_->queue.push_back(std::make_shared<Job>([](Connection&) { return Result<void>{}; }));
        if (impl_->writer_waiting) impl_->work.notify_one();
    }
}

application::ScheduledPage SqliteStore::scheduled_page(application::ScheduledCursor const& from,
                                                      std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    application::ScheduledPage page;
    std::uint64_t through = 0;
    page.events = impl_->read([&](Connection& c) {
        std::vector<application::ScheduledEvent> found;
        through = from.through ? *from.through : last_seq(c, last_scheduled_row);
        Statement& s = c.prepare(from.after ? "SELECT due, body FROM scheduled WHERE (due, event_id) > (?, ?) "
                                              "AND seq <= ? ORDER BY due, event_id LIMIT ?"
                                            : "SELECT due, body FROM scheduled WHERE seq <= ? ORDER BY due, event_id LIMIT ?");
        int n = 1;
        if (from.after) {
            s.bind(n++, static_cast<std::int64_t>(from.after->at.time_since_epoch().count()));
            s.bind(n++, from.after->id.str());
        }
        s.bind(n++, static_cast<std::int64_t>(through));
        s.bind(n, static_cast<std::int64_t>(limit));
        while (s.step()) found.push_back({codec::decode_event(s.bytes(1)), Timestamp(Duration(s.integer(0)))});
        return found;
    });
    if (page.events.size() == limit)
        page.next = application::ScheduledCursor{{{page.events.back().at, envelope_of(page.events.back().event).id}}, through};
    std::lock_guard guard(impl_->outbox_mutex);
    for (auto const& [event, at] : page.events) impl_->scheduled_ids.emplace(envelope_of(event).id, true);
    return page;
}

application::StartMark SqliteStore::start_mark() const { return impl_->start; }

std::vector<Event> SqliteStore::history(InvoiceId const& id) const {
    return impl_->read([&](Connection& c) {
        std::vector<Event> events;
        Statement& s = c.prepare("SELECT body FROM outbox WHERE invoice_id = ? ORDER BY seq");
        s.bind(1, id.str());
        while (s.step()) events.push_back(codec::decode_event(s.bytes(0)));
        return events;
    });
}

application::IdempotencyClaim SqliteStore::claim(IdempotencyKey const& key, std::string_view fingerprint,
                                                 Timestamp now) {
    using State = application::IdempotencyClaim::State;
    // The file is read outside the mutex, so that other claims, completions
    // and commits do not wait for the read; what the read found counts only
    // if no running request with this key ended (its record written) meanwhile.
    for (;;) {
        std::uint64_t ended = 0;
        {
            std::lock_guard guard(impl_->claims_mutex);
            if (auto it = impl_->running.find(key); it != impl_->running.end())
                return {it->second.first == fingerprint ? State::in_use : State::mismatch, std::nullopt};
            auto& reading = impl_->reading[key];
            ++reading.readers;
            ended = reading.ended;
        }
        std::optional<application::IdempotencyClaim> stored;
        std::exception_ptr failed;
        try {
            stored = impl_->read([&](Connection& c) -> std::optional<application::IdempotencyClaim> {
                Statement& s = c.prepare("SELECT fingerprint, since, outcome FROM idempotency WHERE scope = ? AND key = ?");
                if (!s.bind(1, key.scope()).bind(2, key.key()).step()) return std::nullopt;
                // Strictly after the time to live: a key used exactly ttl ago still replays.
                if (Timestamp(Duration(s.integer(1))) + impl_->options.idempotency_ttl < now) return std::nullopt;
                if (s.text(0) != fingerprint) return application::IdempotencyClaim{State::mismatch, std::nullopt};
                return application::IdempotencyClaim{State::replay, codec::decode_outcome(s.bytes(2))};
            });
        } catch (...) {
            failed = std::current_exception();
        }
        std::lock_guard guard(impl_->claims_mutex);
        auto reading = impl_->reading.find(key);
        bool const moved = reading->second.ended != ended;
        if (--reading->second.readers == 0) impl_->reading.erase(reading);
        if (failed) std::rethrow_exception(failed);
        if (stored) return std::move(*stored);
        if (moved) continue; // a request with this key ended while we read: its record is in the file now
        // Another claim of the key may have been taken while we read.
        if (auto it = impl_->running.find(key); it != impl_->running.end())
            return {it->second.first == fingerprint ? State::in_use : State::mismatch, std::nullopt};
        impl_->running.emplace(key, std::pair{std::string(fingerprint), false});
        return {State::claimed, std::nullopt};
    }
}

void SqliteStore::complete(IdempotencyKey const& key, application::PaymentResult outcome, Timestamp now) {
    std::string fingerprint;
    {
        std::lock_guard guard(impl_->claims_mutex);
        auto it = impl_->running.find(key);
        if (it == impl_->running.end()) return;
        if (it->second.second) { // completed by the commit that made the payment
            impl_->end_claim(it);
            return;
        }
        fingerprint = it->second.first;
    }
    std::string const body = codec::encode(outcome);
    (void)impl_->submit([&](Connection& c) -> Result<void> {
        c.prepare("INSERT OR REPLACE INTO idempotency (scope, key, fingerprint, since, outcome) VALUES (?, ?, ?, ?, ?)")
            .bind(1, key.scope())
            .bind(2, key.key())
            .bind(3, fingerprint)
            .bind(4, ticks(now))
            .bind_blob(5, body)
            .step();
        return {};
    });
    // Written or not (a storage failure), the claim ends: a repeat runs again.
    std::lock_guard guard(impl_->claims_mutex);
    if (auto it = impl_->running.find(key); it != impl_->running.end()) impl_->end_claim(it);
}

void SqliteStore::release(IdempotencyKey const& key) {
    std::lock_guard guard(impl_->claims_mutex);
    // Ended like a completion: a claim reading meanwhile reads again, since
    // the request's commit may have written the record (review18 B-5).
    if (auto it = impl_->running.find(key); it != impl_->running.end()) impl_->end_claim(it);
}

std::size_t SqliteStore::purge_expired(Timestamp now) {
    std::int64_t purged = 0;
    auto const oldest = ticks(now - impl_->options.idempotency_ttl);
    (void)impl_->submit([&](Connection& c) -> Result<void> {
        c.prepare("DELETE FROM idempotency WHERE since < ?").bind(1, oldest).step();
        purged = c.changes();
        return {};
    });
    return static_cast<std::size_t>(purged);
}

std::size_t SqliteStore::invoice_count() const { return impl_->invoices; }

bool SqliteStore::sealing() const {
    std::lock_guard guard(impl_->queue_mutex);
    return impl_->in_doubt;
}

std::size_t SqliteStore::awaiting_delivery() const {
    std::lock_guard guard(impl_->outbox_mutex);
    return impl_->outbox_seq.size() + impl_->scheduled_ids.size();
}
std::size_t SqliteStore::payment_count() const { return impl_->payments; }
std::size_t SqliteStore::queued() const {
    std::lock_guard guard(impl_->queue_mutex);
    return impl_->queue.size();
}

bool SqliteStore::lease_to_drive(InvoiceId const&, PaymentId const&) {
    return !writer_behind(queued(), impl_->options.max_queued);
}

std::uint64_t SqliteStore::transactions() const { return impl_->transactions; }
std::uint64_t SqliteStore::commands() const { return impl_->commands; }
std::uint64_t SqliteStore::storage_errors() const { return impl_->storage_errors + impl_->read_errors; }

IntegrityCheck SqliteStore::integrity() const {
    std::lock_guard guard(impl_->check_mutex);
    return impl_->integrity;
}

} // namespace payments::infrastructure
