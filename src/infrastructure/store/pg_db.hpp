#pragma once
// A thin RAII layer over libpq: a connection that owns its PGconn, runs
// prepared statements synchronously or queued in a pipeline, and a result
// (Rows) that owns its PGresult. Every result is asked for in binary format,
// so that bytea comes back as the bytes and integers as big-endian words.

#include <libpq-fe.h>

#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <poll.h>

namespace payments::infrastructure::pg {

/// A PostgreSQL error: its SQLSTATE (empty when the connection failed before
/// the server answered) and libpq's message, which never holds the password.
struct Failure : std::runtime_error {
    Failure(std::string state, std::string const& what) : std::runtime_error(what), sqlstate(std::move(state)) {}
    std::string sqlstate;
};

/// The parameters of one statement: text, bytes (binary) or integers (as text).
class Params {
public:
    Params& text(std::string_view value) {
        add(std::string(value), 0);
        return *this;
    }
    Params& bytes(std::string_view value) {
        add(std::string(value), 1);
        return *this;
    }
    Params& integer(std::int64_t value) {
        add(std::to_string(value), 0);
        return *this;
    }
    Params& null() {
        values_.emplace_back();
        nulls_.push_back(true);
        formats_.push_back(0);
        return *this;
    }

    int size() const { return static_cast<int>(values_.size()); }
    /// The arrays libpq reads; valid while this object lives unchanged.
    void view(std::vector<char const*>& values, std::vector<int>& lengths) const {
        values.clear();
        lengths.clear();
        for (std::size_t i = 0; i < values_.size(); ++i) {
            values.push_back(nulls_[i] ? nullptr : values_[i].data());
            lengths.push_back(static_cast<int>(values_[i].size()));
        }
    }
    int const* formats() const { return formats_.data(); }

private:
    void add(std::string value, int format) {
        values_.push_back(std::move(value));
        nulls_.push_back(false);
        formats_.push_back(format);
    }
    std::vector<std::string> values_;
    std::vector<bool> nulls_;
    std::vector<int> formats_;
};

/// One result, in binary format; owns its PGresult.
class Rows {
public:
    explicit Rows(PGresult* r) : r_(r) {}

    ExecStatusType status() const { return PQresultStatus(r_.get()); }
    bool ok() const { return status() == PGRES_COMMAND_OK || status() == PGRES_TUPLES_OK; }
    /// The SQLSTATE of a failed statement, empty otherwise.
    std::string sqlstate() const {
        char const* s = PQresultErrorField(r_.get(), PG_DIAG_SQLSTATE);
        return s ? s : "";
    }
    std::string message() const { return PQresultErrorMessage(r_.get()); }

    int size() const { return PQntuples(r_.get()); }
    /// Rows an INSERT, UPDATE or DELETE touched.
    std::int64_t affected() const {
        char const* n = PQcmdTuples(r_.get());
        return (n && *n) ? std::stoll(n) : 0;
    }
    bool null(int row, int column) const { return PQgetisnull(r_.get(), row, column) != 0; }
    std::string_view bytes(int row, int column) const {
        return {PQgetvalue(r_.get(), row, column), static_cast<std::size_t>(PQgetlength(r_.get(), row, column))};
    }
    /// A bigint column (int8, binary: big-endian).
    std::int64_t integer(int row, int column) const {
        std::string_view const b = bytes(row, column);
        std::uint64_t v = 0;
        for (char c : b) v = (v << 8) | static_cast<unsigned char>(c);
        return static_cast<std::int64_t>(v);
    }
    bool boolean(int row, int column) const { return bytes(row, column) == std::string_view("\1", 1); }

private:
    struct Clear {
        void operator()(PGresult* r) const { PQclear(r); }
    };
    std::unique_ptr<PGresult, Clear> r_;
};

/// A statement prepared on every connection: its name and SQL.
struct Prepared {
    char const* name;
    char const* sql;
};

/// One connection. Synchronous calls throw Failure; in a pipeline, results
/// are read back in the order the statements were sent. Each wait for a
/// result gives up after `patience` (the server's own statement timeout
/// normally answers first): a server that stopped answering (a stopped
/// process, a black hole the kernel still acknowledges) fails the call
/// instead of hanging it, and the connection is broken from then on.
class Connection {
public:
    /// Connects with libpq's keywords/values (null-terminated arrays, dbname
    /// expanded as a URI or conninfo); throws Failure.
    Connection(char const* const* keywords, char const* const* values) : conn_(PQconnectdbParams(keywords, values, 1)) {
        if (!conn_) throw Failure("", "out of memory connecting to PostgreSQL");
        if (PQstatus(conn_.get()) != CONNECTION_OK) throw Failure("", trimmed(PQerrorMessage(conn_.get())));
    }

    /// True once the server has gone, or stopped answering (the connection must be replaced).
    bool broken() const { return hung_ || PQstatus(conn_.get()) == CONNECTION_BAD; }
    PGconn* get() const { return conn_.get(); }
    /// How long a wait for one result may last; zero: for ever.
    void patience(std::chrono::milliseconds p) { patience_ = p; }

    /// Runs SQL without parameters (several statements allowed); throws
    /// Failure with the first statement's error.
    void exec(char const* sql) {
        if (PQsendQuery(conn_.get(), sql) != 1) throw lost("cannot send");
        std::optional<Rows> failed;
        while (PGresult* r = result()) {
            Rows rows(r);
            if (!rows.ok() && !failed) failed.emplace(std::move(rows));
        }
        if (failed) check(*failed);
    }

    void prepare(Prepared const& p) { check(Rows(PQprepare(conn_.get(), p.name, p.sql, 0, nullptr))); }

    /// Runs a prepared statement and waits for its rows; throws Failure.
    Rows query(char const* name, Params const& params) {
        params.view(values_, lengths_);
        if (PQsendQueryPrepared(conn_.get(), name, params.size(), values_.data(), lengths_.data(), params.formats(), 1) != 1)
            throw lost("cannot send");
        PGresult* first = result();
        if (!first) throw lost("no result");
        Rows rows(first);
        while (PGresult* extra = result()) PQclear(extra);
        check(rows);
        return rows;
    }

    void enter_pipeline() {
        if (PQenterPipelineMode(conn_.get()) != 1) throw lost("cannot enter pipeline mode");
    }
    void exit_pipeline() {
        if (PQexitPipelineMode(conn_.get()) != 1) throw lost("cannot leave pipeline mode");
    }
    /// Queues a prepared statement (name) or, with `sql`, a one-off one.
    void send(char const* name, Params const& params) {
        params.view(values_, lengths_);
        if (PQsendQueryPrepared(conn_.get(), name, params.size(), values_.data(), lengths_.data(), params.formats(), 1) != 1)
            throw lost("cannot send");
    }
    void send_sql(std::string const& sql) {
        if (PQsendQueryParams(conn_.get(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1) != 1)
            throw lost("cannot send");
    }
    /// Ends the pipeline's current segment and flushes it to the server.
    void sync() {
        if (PQpipelineSync(conn_.get()) != 1) throw lost("cannot sync");
    }
    /// The next statement's result (an error or PGRES_PIPELINE_ABORTED is
    /// returned, not thrown); throws Failure when the connection is gone.
    Rows next() {
        PGresult* r = result();
        if (!r) throw lost("no result");
        Rows rows(r);
        if (rows.status() != PGRES_PIPELINE_SYNC) {
            // Each statement's result is followed by a null.
            while (PGresult* extra = result()) PQclear(extra);
        }
        if (rows.status() == PGRES_FATAL_ERROR && broken()) throw Failure(rows.sqlstate(), trimmed(rows.message()));
        return rows;
    }
    /// Reads up to the sync point that ends the segment.
    void until_sync() {
        for (;;) {
            PGresult* r = result();
            if (!r) {
                if (broken()) throw lost("no result");
                continue;
            }
            Rows rows(r);
            if (rows.status() == PGRES_PIPELINE_SYNC) return;
        }
    }

private:
    struct Finish {
        void operator()(PGconn* c) const { PQfinish(c); }
    };

    static std::string trimmed(std::string text) {
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
        return text;
    }
    Failure lost(char const* what) const {
        return Failure("08006", std::string(what) + ": " + trimmed(PQerrorMessage(conn_.get())));
    }
    void check(Rows const& rows) const {
        if (!rows.ok()) throw Failure(rows.sqlstate(), trimmed(rows.message()));
    }

    // PQgetResult once it would not block, within the patience; throws
    // Failure (and the connection stays broken) past it.
    PGresult* result() {
        using clock = std::chrono::steady_clock;
        auto const deadline = clock::now() + patience_;
        while (patience_.count() > 0 && PQisBusy(conn_.get()) == 1) {
            auto const left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
            if (left.count() <= 0) {
                hung_ = true;
                throw Failure("08006", "PostgreSQL did not answer within " + std::to_string(patience_.count()) +
                                           " ms; the connection is dropped");
            }
            pollfd fd{PQsocket(conn_.get()), POLLIN, 0};
            int const ready = ::poll(&fd, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno != EINTR) throw lost("cannot wait for the server");
            if (ready > 0 && PQconsumeInput(conn_.get()) != 1) throw lost("cannot read");
        }
        return PQgetResult(conn_.get());
    }

    std::unique_ptr<PGconn, Finish> conn_;
    std::chrono::milliseconds patience_{0};
    bool hung_ = false;
    std::vector<char const*> values_;
    std::vector<int> lengths_;
};

} // namespace payments::infrastructure::pg
