// The example server over real TCP on an ephemeral loopback port, with a Beast
// client: what the adapter owns (routing, status codes, problem+json,
// idempotency headers, limits, bad input, shutdown). Business rules are tested
// below the adapter.
#include "server.hpp"

#include <payments/domain/events.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <condition_variable>
#include <fstream>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace json = boost::json;
using tcp = net::ip::tcp;
using namespace http_server;
using namespace std::chrono_literals;

constexpr auto guard = std::chrono::seconds(30); // fails a broken build; never a way to wait

// A server with its engine on ephemeral ports, and a client for it.
struct TestServer {
    explicit TestServer(Options tweak = {}) : options(std::move(tweak)) {
        options.bind = "127.0.0.1";
        options.port = 0;
        options.threads = 2;
        options.engine.threads = 2;
        options.engine.log_output = nullptr;
        options.engine.processor.retry = {.base = 1ms, .multiplier = 2.0, .cap = 5ms, .max_attempts = 3};
        engine = payments::Engine::create(options.engine).value();
        api.emplace(*engine, readiness);
        server.emplace(options, *api, engine->logger());
        port = server->start().value();
        readiness = Readiness::ready;
        settled_paid = engine->bus().subscribe<payments::domain::InvoicePaid>("test", [this](auto const&) { bump(); });
        settled_failed = engine->bus().subscribe<payments::domain::InvoiceFailed>("test", [this](auto const&) { bump(); });
    }
    ~TestServer() {
        settled_paid.reset();
        settled_failed.reset();
        server->drain(std::chrono::steady_clock::now() + 5s);
        engine->shutdown(5s);
        server->stop();
    }

    tcp::socket connect() {
        tcp::socket socket(io);
        socket.connect({net::ip::address_v4::loopback(), port});
        return socket;
    }

    Response send(tcp::socket& socket, http::verb verb, std::string target, std::string body = {},
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
        Request request{verb, target, 11};
        request.set(http::field::host, "localhost");
        if (!body.empty()) request.set(http::field::content_type, "application/json");
        for (auto& [name, value] : headers) request.set(name, value);
        request.body() = std::move(body);
        request.prepare_payload();
        http::write(socket, request);
        beast::flat_buffer buffer;
        Response response;
        http::read(socket, buffer, response);
        return response;
    }

    Response call(http::verb verb, std::string target, std::string body = {},
                  std::vector<std::pair<std::string, std::string>> headers = {}) {
        auto socket = connect();
        return send(socket, verb, std::move(target), std::move(body), std::move(headers));
    }

    // Sends raw bytes and returns everything the server answers before it closes.
    std::string raw(std::string const& bytes) {
        auto socket = connect();
        net::write(socket, net::buffer(bytes));
        std::string answer;
        beast::error_code ec;
        net::read(socket, net::dynamic_buffer(answer), ec);
        return answer;
    }

    std::string create(std::int64_t amount = 1000) {
        auto r = call(http::verb::post, "/invoices", R"({"amount":)" + std::to_string(amount) + "}");
        REQUIRE(r.result() == http::status::created);
        return std::string(json::parse(r.body()).at("id").as_string());
    }

    bool wait_settled(int n) {
        std::unique_lock lock(mutex);
        return cv.wait_for(lock, guard, [&] { return settled >= n; });
    }

    void bump() {
        std::lock_guard lock(mutex);
        ++settled;
        cv.notify_all();
    }

    Options options;
    std::unique_ptr<payments::Engine> engine;
    std::atomic<Readiness> readiness{Readiness::starting};
    std::optional<Api> api;
    std::optional<Server> server;
    std::uint16_t port = 0;
    net::io_context io;
    std::mutex mutex;
    std::condition_variable cv;
    int settled = 0;
    payments::application::Subscription settled_paid, settled_failed;
};

json::object body_of(Response const& r) { return json::parse(r.body()).as_object(); }

std::string code_of(Response const& r) {
    CHECK(r[http::field::content_type] == "application/problem+json");
    auto body = body_of(r);
    CHECK(body.at("status").as_int64() == static_cast<int>(r.result()));
    CHECK(body.contains("type"));
    CHECK(body.contains("title"));
    CHECK(body.contains("detail"));
    return std::string(body.at("code").as_string());
}

} // namespace

SCENARIO("create, pay and read an invoice over HTTP") {
    TestServer s;
    auto created = s.call(http::verb::post, "/invoices", R"({"id":"inv_http","amount":1999,"currency":"EUR","description":"x"})");
    CHECK(created.result() == http::status::created);
    CHECK(created[http::field::location] == "/invoices/inv_http");
    CHECK(body_of(created).at("status").as_string() == "PENDING");
    CHECK(s.call(http::verb::post, "/invoices", R"({"id":"inv_http","amount":1})").result() == http::status::conflict);

    auto paid = s.call(http::verb::post, "/invoices/inv_http/pay", R"({"payment_method":"pm_card_ok"})");
    CHECK(paid.result() == http::status::accepted);
    std::string const payment = std::string(body_of(paid).at("id").as_string());
    CHECK(paid[http::field::location] == "/payments/" + payment);
    REQUIRE(s.wait_settled(1));
    REQUIRE(s.engine->wait_idle(guard));

    auto invoice = body_of(s.call(http::verb::get, "/invoices/inv_http"));
    CHECK(invoice.at("status").as_string() == "PAID");
    CHECK(invoice.at("currency").as_string() == "EUR");
    CHECK(invoice.at("attempts").as_int64() == 1);
    CHECK(body_of(s.call(http::verb::get, "/payments/" + payment)).at("status").as_string() == "SUCCEEDED");
    CHECK(body_of(s.call(http::verb::get, "/invoices/inv_http/payments")).at("data").as_array().size() == 1);
    auto list = body_of(s.call(http::verb::get, "/invoices?status=PAID&limit=10"));
    CHECK(list.at("data").as_array().size() == 1);
    CHECK(list.at("next").is_null());
    CHECK(s.call(http::verb::get, "/invoices/inv_none").result() == http::status::not_found);
    CHECK(code_of(s.call(http::verb::post, "/invoices/inv_http/pay")) == "invoice_already_paid");
}

SCENARIO("retry outcomes over HTTP: flaky pays after 3, unavailable fails after max, declined after 1") {
    TestServer s;
    struct Row {
        char const* method;
        char const* status;
        int attempts;
    };
    std::vector<std::pair<Row, std::string>> invoices;
    for (Row row : {Row{"pm_card_flaky_2", "PAID", 3}, Row{"pm_card_unavailable", "FAILED", 3},
                    Row{"pm_card_declined", "FAILED", 1}}) {
        auto id = s.create();
        REQUIRE(s.call(http::verb::post, "/invoices/" + id + "/pay", std::string(R"({"payment_method":")") + row.method + "\"}")
                    .result() == http::status::accepted);
        invoices.emplace_back(row, id);
    }
    REQUIRE(s.wait_settled(3));
    REQUIRE(s.engine->wait_idle(guard));
    for (auto const& [row, id] : invoices) {
        CAPTURE(row.method);
        auto invoice = body_of(s.call(http::verb::get, "/invoices/" + id));
        CHECK(invoice.at("status").as_string() == row.status);
        CHECK(invoice.at("attempts").as_int64() == row.attempts);
    }
}

SCENARIO("bad input gets problem+json with a stable code and changes nothing") {
    Options small;
    small.body_limit = 1024;
    small.header_limit = 1024;
    TestServer s(small);
    struct Row {
        http::verb verb;
        std::string target;
        std::string body;
        std::vector<std::pair<std::string, std::string>> headers;
        http::status status;
        std::string code;
    };
    using V = http::verb;
    using S = http::status;
    std::vector<Row> const rows = {
        {V::post, "/invoices", "{\"amount\": 10", {}, S::bad_request, "malformed_json"},
        {V::post, "/invoices", "[1,2]", {}, S::bad_request, "malformed_json"},
        {V::post, "/invoices", R"({"amount":10.5})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":"10"})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":-1})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":0})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":9223372036854775808})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":1000000000000000})", {}, S::bad_request, "invalid_amount"},
        {V::post, "/invoices", R"({"amount":100,"currency":"XYZ"})", {}, S::bad_request, "unknown_currency"},
        {V::post, "/invoices", R"({"amount":100,"ammount":1})", {}, S::bad_request, "unknown_field"},
        {V::post, "/invoices", R"({"amount":100,"id":"bad id"})", {}, S::bad_request, "invalid_argument"},
        {V::post, "/invoices", R"({"amount":100})", {{"Content-Type", "text/plain"}}, S::unsupported_media_type,
         "unsupported_media_type"},
        {V::post, "/invoices", std::string(2000, ' '), {}, S::payload_too_large, "payload_too_large"},
        {V::get, "/nowhere", "", {}, S::not_found, "route_not_found"},
        {V::delete_, "/invoices", "", {}, S::method_not_allowed, "method_not_allowed"},
        {V::get, "/invoices?limit=0", "", {}, S::bad_request, "invalid_argument"},
        {V::get, "/invoices?status=SHIPPED", "", {}, S::bad_request, "invalid_argument"},
        {V::post, "/invoices/inv_1/pay", "", {{"Idempotency-Key", std::string(256, 'k')}}, S::bad_request,
         "invalid_idempotency_key"},
        {V::get, "/invoices", "", {{"X-Padding", std::string(2000, 'p')}}, S::request_header_fields_too_large,
         "headers_too_large"},
    };
    for (Row const& row : rows) {
        CAPTURE(row.target);
        CAPTURE(row.body.substr(0, 40));
        auto response = s.call(row.verb, row.target, row.body, row.headers);
        CHECK(response.result() == row.status);
        CHECK(code_of(response) == row.code);
        if (row.status == S::method_not_allowed) CHECK(response[http::field::allow] == "POST, GET");
    }
    CHECK(body_of(s.call(http::verb::get, "/invoices")).at("data").as_array().empty()); // nothing was created
}

SCENARIO("malformed HTTP gets 400 and the connection is closed") {
    TestServer s;
    std::string const answer = s.raw("GET /invoices HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
    CHECK(answer.starts_with("HTTP/1.1 400"));
    CHECK(answer.find("\"code\":\"bad_request\"") != std::string::npos);
}

SCENARIO("a client that stays silent past the read timeout is disconnected") {
    Options quick;
    quick.read_timeout = 200ms;
    TestServer s(quick);
    auto socket = s.connect();
    net::write(socket, net::buffer(std::string("GET /health HTTP/1.1\r\nHost: x\r\n"))); // never finished
    std::string answer;
    beast::error_code ec;
    net::read(socket, net::dynamic_buffer(answer), ec); // returns when the server closes
    CHECK(ec == net::error::eof);
}

SCENARIO("connections past the limit are refused with 503, cleanly") {
    Options few;
    few.max_connections = 2;
    TestServer s(few);
    auto a = s.connect();
    auto b = s.connect();
    CHECK(s.send(a, http::verb::get, "/health").result() == http::status::ok); // both are served
    CHECK(s.send(b, http::verb::get, "/health").result() == http::status::ok);
    std::string const third = s.raw("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(third.starts_with("HTTP/1.1 503"));
    CHECK(third.find("too_many_connections") != std::string::npos);
}

SCENARIO("request ids: a sane client id is kept, anything else is replaced") {
    TestServer s;
    CHECK(s.call(http::verb::get, "/health", "", {{"X-Request-Id", "req-client-42"}})["X-Request-Id"] == "req-client-42");
    auto replaced = s.call(http::verb::get, "/health", "", {{"X-Request-Id", "bad id\"{}"}});
    CHECK(std::string(replaced["X-Request-Id"]).starts_with("req_"));
    CHECK(std::string(s.call(http::verb::get, "/health")["X-Request-Id"]).starts_with("req_"));
}

SCENARIO("health, readiness and metrics") {
    TestServer s;
    CHECK(body_of(s.call(http::verb::get, "/health")).at("status").as_string() == "ok");
    CHECK(s.call(http::verb::get, "/health/live").result() == http::status::ok);
    CHECK(s.call(http::verb::get, "/health/ready").result() == http::status::ok);
    s.readiness = Readiness::draining;
    CHECK(s.call(http::verb::get, "/health/ready").result() == http::status::service_unavailable);
    auto metrics = s.call(http::verb::get, "/metrics");
    CHECK(metrics[http::field::content_type] == "text/plain; version=0.0.4");
    CHECK(metrics.body().find("http_requests_total{route=\"/health/ready\",method=\"GET\",status=\"503\"} 1") !=
          std::string::npos);
    CHECK(metrics.body().find("http_request_duration_seconds_bucket{route=\"/health\"") != std::string::npos);
}

SCENARIO("64 connections x 100 requests with one idempotency key make exactly one payment") {
    TestServer s;
    auto const id = s.create();
    std::string const target = "/invoices/" + id + "/pay";
    std::string const body = R"({"payment_method":"pm_card_ok"})";
    std::vector<std::pair<std::string, std::string>> const headers = {{"Idempotency-Key", "order-7"}};
    std::mutex mutex;
    std::set<std::string> payment_ids;
    std::atomic<int> accepted{0}, in_use{0}, other{0};
    std::latch start(64);
    std::vector<std::thread> clients;
    for (int c = 0; c < 64; ++c)
        clients.emplace_back([&] {
            net::io_context io;
            tcp::socket socket(io);
            socket.connect({net::ip::address_v4::loopback(), s.port});
            start.arrive_and_wait();
            for (int i = 0; i < 100; ++i) {
                Request request{http::verb::post, target, 11};
                request.set(http::field::host, "localhost");
                request.set(http::field::content_type, "application/json");
                for (auto const& [k, v] : headers) request.set(k, v);
                request.body() = body;
                request.prepare_payload();
                http::write(socket, request);
                beast::flat_buffer buffer;
                Response response;
                http::read(socket, buffer, response);
                if (response.result() == http::status::accepted) {
                    ++accepted;
                    std::lock_guard lock(mutex);
                    payment_ids.insert(std::string(json::parse(response.body()).at("id").as_string()));
                } else if (response.result() == http::status::conflict &&
                           json::parse(response.body()).at("code").as_string() == "idempotency_key_in_use") {
                    ++in_use;
                } else {
                    ++other;
                }
            }
        });
    for (auto& t : clients) t.join();
    CHECK(other.load() == 0);
    CHECK(accepted.load() + in_use.load() == 6400);
    CHECK(payment_ids.size() == 1);
    REQUIRE(s.wait_settled(1));
    REQUIRE(s.engine->wait_idle(guard));
    auto payments = body_of(s.call(http::verb::get, "/invoices/" + id + "/payments"));
    CHECK(payments.at("data").as_array().size() == 1);

    AND_THEN("after settling, replays are byte-identical") {
        auto first = s.call(http::verb::post, target, body, headers);
        auto second = s.call(http::verb::post, target, body, headers);
        CHECK(first.result() == http::status::accepted);
        CHECK(first["Idempotent-Replayed"] == "true");
        CHECK(first.body() == second.body());
        CHECK(s.call(http::verb::post, "/invoices/" + s.create() + "/pay", body, headers).result() ==
              http::status::unprocessable_entity);
    }
}

SCENARIO("draining finishes requests in flight and drops none") {
    auto s = std::make_unique<TestServer>();
    constexpr int clients = 16;
    std::atomic<int> answered{0}, failed{0};
    std::latch sent(clients);
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
        threads.emplace_back([&] {
            try {
                net::io_context io;
                tcp::socket socket(io);
                socket.connect({net::ip::address_v4::loopback(), s->port});
                // A first answer proves the server accepted the connection.
                if (s->send(socket, http::verb::get, "/health").result() != http::status::ok) ++failed;
                Request request{http::verb::post, "/invoices", 11};
                request.set(http::field::host, "localhost");
                request.set(http::field::content_type, "application/json");
                request.body() = R"({"amount":500})";
                request.prepare_payload();
                http::write(socket, request);
                sent.count_down();
                beast::flat_buffer buffer;
                Response response;
                http::read(socket, buffer, response);
                if (response.result() == http::status::created) ++answered;
                else ++failed;
            } catch (...) {
                ++failed;
            }
        });
    sent.wait();
    CHECK(s->server->drain(std::chrono::steady_clock::now() + guard));
    for (auto& t : threads) t.join();
    CHECK(answered.load() == clients);
    CHECK(failed.load() == 0);
    CHECK(s->engine->service().invoices({.limit = 1000}).value().data.size() == clients);
}

TEST_CASE("every route is in docs/openapi.yaml, and every documented route is served") {
    std::ifstream file(PAYMENTS_OPENAPI_PATH);
    REQUIRE(file.good());
    // The two line shapes of paths in the document: "  /path:" and "    method:".
    std::set<std::string> documented;
    std::string line, path;
    while (std::getline(file, line)) {
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
        if (line.starts_with("  /") && line.back() == ':') {
            path = line.substr(2, line.size() - 3);
        } else if (line.starts_with("    ") && !line.starts_with("     ") && line.back() == ':' && !path.empty()) {
            std::string method = line.substr(4, line.size() - 5);
            if (method != "get" && method != "post" && method != "put" && method != "patch" && method != "delete")
                continue;
            std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::toupper(c); });
            documented.insert(method + " " + path);
        } else if (!line.starts_with(" ")) {
            path.clear(); // left the paths section
        }
    }
    auto const served = Api::routes();
    CHECK(std::set<std::string>(served.begin(), served.end()) == documented);
}
