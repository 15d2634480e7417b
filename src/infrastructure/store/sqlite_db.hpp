#pragma once
// A thin RAII layer over the SQLite C API: a connection that owns its
// prepared statements, and a statement that binds, steps and resets.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace payments::infrastructure::sqlite {

/// An SQLite error: the result code (extended) and SQLite's message.
struct Failure : std::runtime_error {
    Failure(int rc, std::string const& what) : std::runtime_error(what), code(rc) {}
    int code;
};

/// A prepared statement, reset on every use (owned by its Connection).
class Statement {
public:
    explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}

    Statement& bind(int i, std::string_view text) {
        check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
        return *this;
    }
    Statement& bind_blob(int i, std::string_view bytes) {
        check(sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
        return *this;
    }
    Statement& bind(int i, std::int64_t value) {
        check(sqlite3_bind_int64(stmt_, i, value));
        return *this;
    }

    /// True while a row is there; throws on an error.
    bool step() {
        int const rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw Failure(sqlite3_extended_errcode(sqlite3_db_handle(stmt_)), sqlite3_errmsg(sqlite3_db_handle(stmt_)));
    }
    /// Like step(), but a constraint violation is returned as false, not thrown.
    bool step_unless_constraint(bool& violated) {
        int const rc = sqlite3_step(stmt_);
        violated = (rc & 0xff) == SQLITE_CONSTRAINT;
        if (rc == SQLITE_DONE || violated) return false;
        if (rc == SQLITE_ROW) return true;
        throw Failure(sqlite3_extended_errcode(sqlite3_db_handle(stmt_)), sqlite3_errmsg(sqlite3_db_handle(stmt_)));
    }

    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    std::string_view bytes(int column) const {
        auto const* data = static_cast<char const*>(sqlite3_column_blob(stmt_, column));
        return {data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
    }
    std::string_view text(int column) const {
        auto const* data = reinterpret_cast<char const*>(sqlite3_column_text(stmt_, column));
        return {data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
    }

    void reset() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    sqlite3_stmt* get() const { return stmt_; }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) throw Failure(rc, sqlite3_errmsg(sqlite3_db_handle(stmt_)));
    }

    sqlite3_stmt* stmt_;
};

/// One connection, with its statements prepared once.
class Connection {
public:
    /// Opens `path` with `flags` through `vfs` (empty: the default); throws Failure.
    Connection(std::string const& path, int flags, std::string const& vfs) {
        sqlite3* db = nullptr;
        int const rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs.empty() ? nullptr : vfs.c_str());
        db_.reset(db);
        if (rc != SQLITE_OK) throw Failure(rc, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_extended_result_codes(db, 1);
    }

    /// Runs statements without results; throws Failure.
    void exec(char const* sql) {
        char* message = nullptr;
        int const rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &message);
        if (rc != SQLITE_OK) {
            std::string text = message ? message : sqlite3_errstr(rc);
            sqlite3_free(message);
            throw Failure(sqlite3_extended_errcode(db_.get()), text);
        }
    }

    /// The statement for `sql` (a string literal: its address is the key), reset.
    Statement& prepare(char const* sql) {
        auto it = statements_.find(sql);
        if (it == statements_.end()) {
            sqlite3_stmt* stmt = nullptr;
            int const rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
            if (rc != SQLITE_OK) throw Failure(rc, sqlite3_errmsg(db_.get()));
            it = statements_.emplace(sql, Owned(stmt)).first;
        }
        Statement& statement = it->second.statement;
        statement.reset();
        return statement;
    }

    /// Resets every statement still stepping, which ends the read
    /// transaction it holds: a connection must not keep an old snapshot.
    void finish() {
        for (sqlite3_stmt* s = sqlite3_next_stmt(db_.get(), nullptr); s != nullptr; s = sqlite3_next_stmt(db_.get(), s))
            if (sqlite3_stmt_busy(s)) sqlite3_reset(s);
    }

    std::int64_t changes() const { return sqlite3_changes64(db_.get()); }
    std::int64_t last_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }
    sqlite3* get() const { return db_.get(); }

    ~Connection() { statements_.clear(); }

private:
    struct Close {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };
    struct Owned {
        explicit Owned(sqlite3_stmt* s) : statement(s) {}
        Owned(Owned&& other) noexcept : statement(std::exchange(other.statement, Statement(nullptr))) {}
        Owned& operator=(Owned&&) = delete;
        ~Owned() { sqlite3_finalize(statement.get()); }
        Statement statement;
    };

    std::unique_ptr<sqlite3, Close> db_; // declared first: closed after the statements are finalized
    std::unordered_map<char const*, Owned> statements_;
};

} // namespace payments::infrastructure::sqlite
