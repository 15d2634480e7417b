#pragma once
// The PostgreSQL server the tests use: scripts/postgres starts a private one
// and exports its URI as PAYMENTS_TEST_POSTGRES. Each test gets a schema of
// its own (so that tests run in parallel), dropped at its end.

#include "wait.hpp"

#include <payments/infrastructure/store/postgres_store.hpp>

#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>

namespace test {

/// The test server's URI. Missing under CI=true: the test fails (CI runs the
/// suite under scripts/postgres run); missing elsewhere: a message, and the
/// caller skips.
inline std::optional<std::string> test_postgres_uri() {
    char const* uri = std::getenv("PAYMENTS_TEST_POSTGRES");
    if (uri && *uri) return std::string(uri);
    char const* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true")
        FAIL("PAYMENTS_TEST_POSTGRES is not set: run the tests under scripts/postgres run -- ...");
    MESSAGE("PAYMENTS_TEST_POSTGRES is not set: the PostgreSQL case is skipped (scripts/postgres run -- ... sets it)");
    return std::nullopt;
}

/// A store opened with `options`; the test fails with the store's message when it cannot.
inline std::shared_ptr<payments::infrastructure::PostgresStore> open_store(payments::infrastructure::PostgresStoreOptions options) {
    auto opened = payments::infrastructure::PostgresStore::open(std::move(options));
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().detail));
    return std::move(*opened);
}

/// Runs SQL on the test server (setup, teardown, faults); false on an error.
inline bool run_sql(std::string const& uri, std::string const& sql) {
    PGconn* c = PQconnectdb(uri.c_str());
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult* r = PQexec(c, sql.c_str());
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    PQfinish(c);
    return ok;
}

/// The server processes of the sessions named `application_name`; with
/// `statement` (a LIKE pattern), only those whose current or last statement
/// matches it, and with `waiting_on_a_lock`, only those waiting for a row or
/// transaction lock in it.
inline std::vector<int> server_processes_of(std::string const& uri, std::string const& application_name,
                                            std::string const& statement = "", bool waiting_on_a_lock = false) {
    std::vector<int> pids;
    PGconn* c = PQconnectdb(uri.c_str());
    if (PQstatus(c) == CONNECTION_OK) {
        char const* values[] = {application_name.c_str(), statement.c_str(), waiting_on_a_lock ? "t" : "f"};
        PGresult* r = PQexecParams(c,
                                   "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ($2 = '' OR "
                                   "query LIKE $2) AND (NOT $3::bool OR wait_event_type = 'Lock')",
                                   3, nullptr, values, nullptr, nullptr, 0);
        for (int row = 0; row < PQntuples(r); ++row) pids.push_back(std::stoi(PQgetvalue(r, row, 0)));
        PQclear(r);
    }
    PQfinish(c);
    return pids;
}

/// Waits (at most 5 s) until `count` sessions named `application_name` are
/// in (or have run) a statement matching `statement` (a LIKE pattern), with
/// `waiting_on_a_lock` waiting for a lock in it; the server processes of
/// those sessions, fewer at the deadline.
inline std::vector<int> wait_for_session(std::string const& uri, std::string const& application_name,
                                         std::string const& statement, bool waiting_on_a_lock, std::size_t count = 1) {
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        auto pids = server_processes_of(uri, application_name, statement, waiting_on_a_lock);
        if (pids.size() >= count || std::chrono::steady_clock::now() >= deadline) return pids;
        std::this_thread::yield(); // each look is a round trip to the server: no busy spin
    }
}

/// The liveness sessions' statement that sweeps lapsed registrations (a LIKE
/// pattern): a store's heart runs it first thing, then every third of its
/// lease timeout.
inline std::string const sweeping = "WITH gone AS (DELETE FROM owners%";

/// Stops server processes (SIGSTOP), and lets them go on whatever happens.
struct StoppedBackends {
    std::vector<int> pids;
    explicit StoppedBackends(std::vector<int> p) : pids(std::move(p)) {
        for (int pid : pids) ::kill(pid, SIGSTOP);
    }
    StoppedBackends(StoppedBackends const&) = delete;
    StoppedBackends& operator=(StoppedBackends const&) = delete;
    ~StoppedBackends() { resume(); }
    void resume() {
        for (int pid : std::exchange(pids, {})) ::kill(pid, SIGCONT);
    }
};

/// A session of its own on the test server, standing for another process (its
/// open transaction's locks); ended whatever happens, so that its locks never
/// hold the schema's drop up.
class OtherSession {
public:
    explicit OtherSession(std::string const& uri) : c_(PQconnectdb(uri.c_str()), PQfinish) {
        REQUIRE(PQstatus(c_.get()) == CONNECTION_OK);
    }
    /// Runs SQL; false on an error.
    bool exec(std::string const& sql) {
        PGresult* r = PQexec(c_.get(), sql.c_str());
        bool const ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        return ok;
    }

private:
    std::unique_ptr<PGconn, void (*)(PGconn*)> c_;
};

/// A schema of the test's own on the test server, dropped with everything in it.
class TestSchema {
public:
    explicit TestSchema(std::string uri) : uri_(std::move(uri)) {
        static std::atomic<int> counter{0};
        name_ = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    }
    TestSchema(TestSchema const&) = delete;
    TestSchema& operator=(TestSchema const&) = delete;
    ~TestSchema() { run_sql(uri_, "DROP SCHEMA IF EXISTS " + name_ + " CASCADE"); }

    std::string const& uri() const { return uri_; }
    std::string const& name() const { return name_; }
    /// Store options on this schema.
    payments::infrastructure::PostgresStoreOptions options() const {
        payments::infrastructure::PostgresStoreOptions o;
        o.uri = uri_;
        o.schema = name_;
        o.pool_size = 3;
        o.application_name = name_;
        return o;
    }

private:
    std::string uri_;
    std::string name_;
};

} // namespace test
