#pragma once
// A commit's Changes as the durable stores write them: rows of ids, columns
// and codec bodies, encoded by the caller's thread so that a store's writer
// only runs SQL.

#include <payments/application/store.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace payments::infrastructure {

/// Times are kept as the count of Timestamp ticks since the epoch.
inline std::int64_t ticks(domain::Timestamp t) { return t.time_since_epoch().count(); }

/// What one commit writes.
struct Encoded {
    /// An invoice or a payment: its columns, the version it was read at, its body.
    struct Row {
        std::string id;
        std::string invoice_id;
        std::int64_t attempt = 0;
        std::int64_t status = 0;
        std::uint64_t version = 0;
        std::uint64_t expected = 0;
        std::string body;
        std::string review_of; ///< an invoice: its attempt under review ("" if none)
    };
    /// An event of the outbox, or a scheduled one (`at` is then its due time).
    struct EventRow {
        std::string id;
        std::string invoice_id;
        std::int64_t at = 0;
        std::string body;
    };
    std::optional<Row> invoice;
    std::vector<Row> payments;
    std::vector<EventRow> events;
    std::vector<EventRow> scheduled;
    std::optional<std::array<std::string, 4>> idempotency; // scope, key, fingerprint, outcome
    std::int64_t idempotency_since = 0;
};

/// Encodes everything but the idempotency record (whose fingerprint the store knows).
Encoded encode(application::Changes const& changes);

} // namespace payments::infrastructure
