#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace psp {

/// A failure of the ledger's database (open, schema, a statement).
struct LedgerError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One PaymentIntent as the ledger holds it, with the answer its key was
/// given and when each part of it becomes true (late booking, search lag,
/// processing).
struct Intent {
    std::int64_t seq = 0; ///< the provider's id is "pi_<seq>"
    std::string idempotency_key;
    std::string fingerprint; ///< the first request's parameters, to check a reused key
    std::string invoice_id;
    std::string payment_id;
    std::int64_t amount = 0;
    std::int64_t amount_received = 0; ///< what is taken once booked
    std::string currency;             ///< lower case
    bool charged = false;             ///< false: the attempt failed, `error_code` says why
    std::string error_code;           ///< card error code of a failed attempt
    std::string error_message;
    std::int64_t created_ms = 0;
    std::int64_t booked_ms = 0;  ///< charged: the charge exists from then (late booking: in the future)
    std::int64_t visible_ms = 0; ///< the search sees it from then
    std::int64_t final_ms = 0;   ///< charged: "processing" until then, "succeeded" after

    std::string id() const { return "pi_" + std::to_string(seq); }
};

/// Succeeded charges booked, per currency: the /metrics counters.
struct LedgerTotals {
    std::int64_t charges = 0;
    std::map<std::string, std::int64_t> amount_by_currency;
};

/// The provider's ledger in one SQLite file: one row per idempotency key,
/// written before the answer is sent, so it survives a restart. Thread-safe.
class Ledger {
public:
    /// Opens or creates the file (":memory:" for a ledger that dies with the process).
    explicit Ledger(std::string const &path);
    ~Ledger();
    Ledger(Ledger const &) = delete;
    Ledger &operator=(Ledger const &) = delete;

    std::optional<Intent> by_key(std::string const &key) const;
    std::optional<Intent> by_seq(std::int64_t seq) const;
    /// Every intent whose metadata gateway_key is `key` and that the search sees at `now_ms`.
    std::vector<Intent> search_gateway_key(std::string const &key, std::int64_t now_ms) const;
    /// Inserts the intent and fills in its seq; false if the key is already there.
    bool insert(Intent &intent);
    /// Succeeded charges at `now_ms`, each counted once.
    LedgerTotals totals(std::int64_t now_ms) const;

private:
    struct Statement;
    sqlite3 *db_ = nullptr;
    mutable std::mutex mutex_; // Owned by: the ledger; guards db_
    void exec(char const *sql) const;
};

} // namespace psp
