// Acceptance over real processes and sockets: payments-server with
// `--gateway http://...` in front of payments-psp, the provider killed with
// SIGKILL under load and restarted on its ledger; and two providers, the first
// killed, where new attempts move to the second and an attempt whose outcome
// is unknown at the first waits for the first. Every wait is for something the
// server or the provider says, with a deadline; no sleeps.

#include "gateway/processes.hpp"
#include "gateway/psp_fixture.hpp"

#include <atomic>
#include <optional>
#include <algorithm>
#include <map>
#include <set>

using namespace test;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

// Small timings, so that an outage and its recovery take a second or two: a
// circuit over the last 4 charges opens at 2 provider failures and probes
// again after 200 ms; retries 10-50 ms apart, up to 100 of them per cycle.
std::vector<std::string> server_flags(std::string const& db, std::vector<std::string> gateways,
                                      std::string settle_window_ms = "200") {
    std::vector<std::string> flags = {"--threads", "2", "--store", "sqlite:" + db, "--synchronous", "normal",
                                      "--gateway-key", "sk_test_acceptance_0123456789",
                                      "--gateway-timeout-ms", "2000", "--settle-window-ms", settle_window_ms,
                                      "--janitor-interval-ms", "200", "--retry-base-ms", "10",
                                      "--retry-cap-ms", "50", "--retry-max-attempts", "100",
                                      "--breaker-window", "4", "--breaker-minimum-calls", "2",
                                      "--breaker-failure-ratio", "0.5", "--breaker-open-ms", "200",
                                      "--drain-timeout-ms", "2000"};
    for (auto& url : gateways) flags.insert(flags.end(), {"--gateway", url});
    return flags;
}

std::string field(json::object const& line, char const* name) {
    auto const* value = line.if_contains(name);
    return value && value->is_string() ? std::string(value->as_string()) : std::string();
}

// The log line that says an invoice reached a final status (PAID, FAILED,
// NEEDS_REVIEW): its invoice id, else "".
std::string settled_invoice(json::object const& line) {
    std::string const msg = field(line, "msg");
    if (msg == "invoice needs an operator") return field(line, "invoice_id");
    if (msg != "payment succeeded" && msg != "payment failed") return {};
    std::string const status = field(line, "invoice_status");
    return status == "PROCESSING" ? std::string() : field(line, "invoice_id");
}

// Waits until the server has logged a final status for every one of `invoices`.
bool wait_all_settled(ServerProcess& server, std::set<std::string> const& invoices) {
    std::set<std::string> settled;
    return server.wait_for_line([&](json::object const& line) {
        if (auto id = settled_invoice(line); invoices.contains(id)) settled.insert(id);
        return settled.size() == invoices.size();
    });
}

bool wait_circuit_opened(ServerProcess& server, std::string const& gateway) {
    return server.wait_for_line([&](json::object const& line) {
        return field(line, "msg") == "gateway circuit changed" && field(line, "gateway") == gateway &&
               field(line, "to") == "open";
    });
}

std::string create_invoice(HttpConnection& c, std::int64_t amount) {
    auto created = c.call(http::verb::post, "/invoices", R"({"amount":)" + std::to_string(amount) + "}");
    if (created.status != 201) return {};
    return std::string(created.json().at("id").as_string());
}

unsigned pay(HttpConnection& c, std::string const& invoice, std::string const& method, std::string const& key) {
    return c.call(http::verb::post, "/invoices/" + invoice + "/pay", R"({"payment_method":")" + method + R"("})",
                  {{"Idempotency-Key", key}})
        .status;
}

json::array payments_of(std::uint16_t port, std::string const& invoice) {
    return http_call(port, http::verb::get, "/invoices/" + invoice + "/payments").json().at("data").as_array();
}

std::string status_of(std::uint16_t port, std::string const& invoice) {
    return std::string(http_call(port, http::verb::get, "/invoices/" + invoice).json().at("status").as_string());
}

std::string metrics_of(std::uint16_t port) { return http_call(port, http::verb::get, "/metrics").body; }

// Clients creating and paying invoices (pm_card_ok) on keep-alive
// connections of their own. Past `hold_at` accepted payments they wait for
// release(), so that some of the load always comes after what the test does
// at that point.
class Load {
public:
    Load(std::uint16_t port, int clients, int each, int hold_at) : hold_at_(hold_at) {
        for (int c = 0; c < clients; ++c)
            threads_.emplace_back([this, port, c, each] { run(port, c, each); });
    }
    ~Load() {
        release();
        join();
    }

    bool wait_accepted(int n) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, std::chrono::seconds(30), [&] { return accepted_ >= n || !errors_.empty(); }) &&
               errors_.empty();
    }
    void release() {
        std::lock_guard lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }
    void join() {
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }

    // After join(): the invoices whose payment was accepted, with their amounts, and any error.
    std::map<std::string, std::int64_t> invoices;
    std::vector<std::string> errors_; // Owned by: mutex_ until join()

private:
    void run(std::uint16_t port, int client, int each) {
        try {
            HttpConnection c(port);
            for (int i = 0; i < each; ++i) {
                std::int64_t const amount = 1000 + client * 100 + i;
                std::string const invoice = create_invoice(c, amount);
                if (invoice.empty()) return fail("create refused");
                {
                    std::unique_lock lock(mutex_);
                    changed_.wait(lock, [&] { return accepted_ < hold_at_ || released_; });
                }
                if (unsigned status = pay(c, invoice, "pm_card_ok", "load-" + invoice); status != 202)
                    return fail("pay answered " + std::to_string(status));
                std::lock_guard lock(mutex_);
                ++accepted_;
                invoices.emplace(invoice, amount);
                changed_.notify_all();
            }
        } catch (std::exception const& e) {
            fail(e.what());
        }
    }
    void fail(std::string what) {
        std::lock_guard lock(mutex_);
        errors_.push_back(std::move(what));
        changed_.notify_all();
    }

    int const hold_at_;
    std::mutex mutex_;
    std::condition_variable changed_;
    int accepted_ = 0;      // Owned by: mutex_
    bool released_ = false; // Owned by: mutex_
    std::vector<std::thread> threads_;
};

} // namespace

SCENARIO("payments-psp killed with SIGKILL under load and restarted: nothing lost, nothing charged twice") {
    TempDir dir;
    std::string const ledger = dir.file("psp.db");
    std::optional<PspProcess> psp(std::in_place, ledger);
    std::uint16_t const psp_port = psp->port;
    ServerProcess server(server_flags(dir.file("payments.db"), {psp->url()}));
    constexpr int clients = 4, each = 12, total = clients * each;

    GIVEN("four clients creating and paying invoices, and the provider killed a third of the way in") {
        Load load(server.port, clients, each, 2 * total / 3);
        REQUIRE(load.wait_accepted(total / 3));
        psp->kill();
        load.release();

        WHEN("the charges fail at the dead provider, its circuit opens (in /metrics and /health/ready)") {
            // (Checked here, not in a THEN of its own: a sibling subcase would run the whole outage twice.)
            REQUIRE_MESSAGE(wait_circuit_opened(server, "gateway-1"), server.log_text());
            CHECK(series_value(metrics_of(server.port),
                               "payment_gateway_circuit_transitions_total{gateway=\"gateway-1\",to=\"open\"}") >= 1);
            // It stays open or probing (half-open) while the provider is down: never closed.
            auto const ready = http_call(server.port, http::verb::get, "/health/ready").json();
            CHECK(ready.at("gateways").at(0).at("circuit") != "closed");
            AND_WHEN("the provider is restarted on its ledger and the load has ended") {
                psp.emplace(ledger, psp_port);
                load.join();
                REQUIRE(load.errors_.empty());
                REQUIRE(load.invoices.size() == static_cast<std::size_t>(total));
                std::set<std::string> ids;
                std::int64_t amount = 0;
                for (auto const& [id, cents] : load.invoices) {
                    ids.insert(id);
                    amount += cents;
                }
                REQUIRE_MESSAGE(wait_all_settled(server, ids), server.log_text());
                THEN("every invoice is PAID with one successful attempt, and the provider booked each once") {
                    for (auto const& id : ids) {
                        CAPTURE(id);
                        CHECK(status_of(server.port, id) == "PAID");
                        int succeeded = 0;
                        for (auto const& p : payments_of(server.port, id)) succeeded += p.at("status") == "SUCCEEDED";
                        CHECK(succeeded == 1);
                    }
                    std::string const booked = metrics_of(psp->port);
                    CHECK(series_value(booked, "psp_charges_total") == total);
                    CHECK(series_value(booked, "psp_charge_amount_total{currency=\"usd\"}") == amount);
                    CHECK(series_value(metrics_of(server.port),
                                       "payment_gateway_circuit_transitions_total{gateway=\"gateway-1\",to=\"closed\"}") >= 1);
                    CHECK(server.terminate() == 0);
                }
            }
        }
    }
}

SCENARIO("two providers, the first killed: new attempts move to the second, an unresolved one waits for the first") {
    TempDir dir;
    std::string const ledger_a = dir.file("psp-a.db");
    // A answers pm_card_late_answer a minute late, and tells our listener at once when it books a charge.
    OneRequestListener booked;
    std::optional<PspProcess> a(std::in_place, ledger_a, 0,
                                std::vector<std::string>{"--late-answer-delay-ms", "60000", "--webhook-url",
                                                         booked.url("/booked"), "--webhook-secret",
                                                         "whsec_acceptance_0123456789"});
    std::uint16_t const port_a = a->port;
    PspProcess b(dir.file("psp-b.db"));
    ServerProcess server(server_flags(dir.file("payments.db"), {a->url(), b.url()}));
    HttpConnection client(server.port);

    GIVEN("an attempt U that A booked, and A killed before it answered") {
        std::string const u = create_invoice(client, 4200);
        REQUIRE(pay(client, u, "pm_card_late_answer", "u-1") == 202);
        auto const notice = booked.wait();
        REQUIRE(notice);
        CHECK(notice->find("payment_intent.succeeded") != std::string::npos);
        a->kill();
        REQUIRE(server.wait_for_line([&](json::object const& line) {
            return field(line, "msg") == "payment failed" && field(line, "invoice_id") == u &&
                   field(line, "failure") == "UNKNOWN_OUTCOME";
        }));

        WHEN("four more invoices are paid while A is down") {
            std::set<std::string> more;
            for (int i = 0; i < 4; ++i) {
                std::string const invoice = create_invoice(client, 100 + i);
                REQUIRE(pay(client, invoice, "pm_card_ok", "m-" + std::to_string(i)) == 202);
                more.insert(invoice);
            }
            REQUIRE_MESSAGE(wait_all_settled(server, more), server.log_text());
            // One path through the scenario: a THEN beside the AND_WHEN would start every process again.
            INFO("A's circuit opened; they are PAID at B, once each; U has moved nowhere");
            CHECK(series_value(metrics_of(server.port),
                               "payment_gateway_circuit_transitions_total{gateway=\"gateway-1\",to=\"open\"}") >= 1);
            for (auto const& id : more) {
                CAPTURE(id);
                CHECK(status_of(server.port, id) == "PAID");
                for (auto const& p : payments_of(server.port, id)) {
                    if (p.at("status") == "SUCCEEDED") CHECK(p.at("gateway") == "gateway-2");
                    else CHECK(p.at("failure").at("kind") == "TRANSIENT"); // refused by dead A: never sent
                }
            }
            CHECK(series_value(metrics_of(b.port), "psp_charges_total") == 4);
            CHECK(status_of(server.port, u) == "PROCESSING");
            auto const u_attempts = payments_of(server.port, u);
            REQUIRE(u_attempts.size() == 1);
            CHECK(u_attempts[0].at("gateway") == "gateway-1");
            CHECK(u_attempts[0].at("status") == "UNKNOWN");

            AND_WHEN("A is back, on its ledger") {
                a.emplace(ledger_a, port_a);
                REQUIRE_MESSAGE(wait_all_settled(server, {u}), server.log_text());
                THEN("U is settled at A by a look-up of its own key: one charge at A, four at B, none twice") {
                    CHECK(status_of(server.port, u) == "PAID");
                    auto const attempts = payments_of(server.port, u);
                    REQUIRE(attempts.size() == 1);
                    CHECK(attempts[0].at("gateway") == "gateway-1");
                    CHECK(attempts[0].at("status") == "SUCCEEDED");
                    CHECK(series_value(metrics_of(a->port), "psp_charges_total") == 1);
                    CHECK(series_value(metrics_of(b.port), "psp_charges_total") == 4);
                    CHECK(server.terminate() == 0);
                }
            }
        }
    }
}
