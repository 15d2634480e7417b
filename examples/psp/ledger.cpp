#include "ledger.hpp"

#include <sqlite3.h>

namespace psp {

namespace {

constexpr char const *schema = R"(
CREATE TABLE IF NOT EXISTS intents(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    amount_received INTEGER NOT NULL,
    currency TEXT NOT NULL,
    charged INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    error_message TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    booked_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    final_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS intents_booked ON intents(charged, booked_ms);
)";

constexpr char const *columns =
    "seq, idempotency_key, fingerprint, invoice_id, payment_id, amount, amount_received, "
    "currency, charged, error_code, error_message, created_ms, booked_ms, visible_ms, final_ms";

} // namespace

// A prepared statement, finalized on every path out.
struct Ledger::Statement {
    sqlite3_stmt *stmt = nullptr;
    Statement(sqlite3 *db, std::string const &sql) {
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
            throw LedgerError(std::string("prepare: ") + sqlite3_errmsg(db));
    }
    ~Statement() { sqlite3_finalize(stmt); }
    Statement(Statement const &) = delete;
    Statement &operator=(Statement const &) = delete;

    void bind(int i, std::string const &text) {
        sqlite3_bind_text(stmt, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
    void bind(int i, std::int64_t value) { sqlite3_bind_int64(stmt, i, value); }
    std::string text(int i) const {
        auto const *p = reinterpret_cast<char const *>(sqlite3_column_text(stmt, i));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt, i))) : std::string();
    }
    std::int64_t integer(int i) const { return sqlite3_column_int64(stmt, i); }
    Intent intent() const {
        return Intent{integer(0),      text(1), text(2),  text(3),     text(4),     integer(5),  integer(6), text(7),
                      integer(8) != 0, text(9), text(10), integer(11), integer(12), integer(13), integer(14)};
    }
};

Ledger::Ledger(std::string const &path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK) {
        std::string const why = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw LedgerError("cannot open the ledger " + path + ": " + why);
    }
    sqlite3_busy_timeout(db_, 5000);
    // WAL + NORMAL: a committed booking survives a process crash (not a power cut), which is what the tests kill.
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    exec(schema);
}

Ledger::~Ledger() { sqlite3_close(db_); }

void Ledger::exec(char const *sql) const {
    char *message = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        std::string const why = message ? message : "unknown";
        sqlite3_free(message);
        throw LedgerError("ledger: " + why);
    }
}

std::optional<Intent> Ledger::by_key(std::string const &key) const {
    std::lock_guard lock(mutex_);
    Statement s(db_, std::string("SELECT ") + columns + " FROM intents WHERE idempotency_key = ?");
    s.bind(1, key);
    if (sqlite3_step(s.stmt) == SQLITE_ROW) return s.intent();
    return std::nullopt;
}

std::optional<Intent> Ledger::by_seq(std::int64_t seq) const {
    std::lock_guard lock(mutex_);
    Statement s(db_, std::string("SELECT ") + columns + " FROM intents WHERE seq = ?");
    s.bind(1, seq);
    if (sqlite3_step(s.stmt) == SQLITE_ROW) return s.intent();
    return std::nullopt;
}

std::vector<Intent> Ledger::search_gateway_key(std::string const &key, std::int64_t now_ms) const {
    std::lock_guard lock(mutex_);
    // The idempotency key is the gateway key (docs/psp-protocol.md), so the metadata search is this look-up.
    Statement s(db_, std::string("SELECT ") + columns + " FROM intents WHERE idempotency_key = ? AND visible_ms <= ?");
    s.bind(1, key);
    s.bind(2, now_ms);
    std::vector<Intent> found;
    while (sqlite3_step(s.stmt) == SQLITE_ROW) found.push_back(s.intent());
    return found;
}

bool Ledger::insert(Intent &intent) {
    std::lock_guard lock(mutex_);
    Statement s(db_, "INSERT OR IGNORE INTO intents(idempotency_key, fingerprint, invoice_id, payment_id, amount, "
                     "amount_received, currency, charged, error_code, error_message, created_ms, booked_ms, "
                     "visible_ms, final_ms) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, intent.idempotency_key);
    s.bind(2, intent.fingerprint);
    s.bind(3, intent.invoice_id);
    s.bind(4, intent.payment_id);
    s.bind(5, intent.amount);
    s.bind(6, intent.amount_received);
    s.bind(7, intent.currency);
    s.bind(8, std::int64_t{intent.charged ? 1 : 0});
    s.bind(9, intent.error_code);
    s.bind(10, intent.error_message);
    s.bind(11, intent.created_ms);
    s.bind(12, intent.booked_ms);
    s.bind(13, intent.visible_ms);
    s.bind(14, intent.final_ms);
    if (sqlite3_step(s.stmt) != SQLITE_DONE) throw LedgerError(std::string("insert: ") + sqlite3_errmsg(db_));
    if (sqlite3_changes(db_) == 0) return false;
    intent.seq = sqlite3_last_insert_rowid(db_);
    return true;
}

LedgerTotals Ledger::totals(std::int64_t now_ms) const {
    std::lock_guard lock(mutex_);
    Statement s(db_, "SELECT currency, COUNT(*), SUM(amount_received) FROM intents "
                     "WHERE charged = 1 AND booked_ms <= ?1 AND final_ms <= ?1 GROUP BY currency");
    s.bind(1, now_ms);
    LedgerTotals totals;
    while (sqlite3_step(s.stmt) == SQLITE_ROW) {
        totals.charges += s.integer(1);
        totals.amount_by_currency[s.text(0)] = s.integer(2);
    }
    return totals;
}

} // namespace psp
