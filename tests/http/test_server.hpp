#pragma once
// A server with its engine on an ephemeral loopback port, and Beast clients
// for it: the fixtures of the HTTP tests.
#include "gateways.hpp"
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
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>

namespace http_test {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace json = boost::json;
using tcp = net::ip::tcp;
using namespace http_server;
using namespace std::chrono_literals;

constexpr std::chrono::milliseconds guard = std::chrono::seconds(30); // fails a broken build; never a way to wait

// A server with its engine on ephemeral ports, and a client for it.
struct TestServer {
    explicit TestServer(Options tweak = {}, std::FILE* log = nullptr) : options(std::move(tweak)) {
        options.bind = "127.0.0.1";
        options.port = 0;
        options.threads = 2;
        options.engine.threads = 2;
        options.engine.log_output = log;
        options.engine.processor.retry = {.base = 1ms, .multiplier = 2.0, .cap = 5ms, .max_attempts = 3};
        engine = build_engine(options, gateways).value();
        api.emplace(*engine, readiness, options.admin_token, options.webhooks);
        server.emplace(options, *api, engine->logger());
        port = server->start().value();
        readiness = Readiness::ready;
        settled_paid = engine->bus().subscribe<payments::domain::InvoicePaid>("test", [this](auto const&) { bump(); });
        settled_failed = engine->bus().subscribe<payments::domain::InvoiceFailed>("test", [this](auto const&) { bump(); });
    }
    // Stops as main() does on SIGTERM: the connections and the engine's work
    // in flight share options.drain_timeout. A test that leaves a gateway
    // call unanswered on purpose sets it short, so as not to wait for it.
    ~TestServer() {
        settled_paid.reset();
        settled_failed.reset();
        auto const deadline = std::chrono::steady_clock::now() + options.drain_timeout;
        server->drain(deadline);
        engine->shutdown(std::max(std::chrono::steady_clock::duration::zero(), deadline - std::chrono::steady_clock::now()));
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
    std::unique_ptr<Gateways> gateways; // --gateway URLs; outlives the engine
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

inline json::object body_of(Response const& r) { return json::parse(r.body()).as_object(); }

inline std::string code_of(Response const& r) {
    CHECK(r[http::field::content_type] == "application/problem+json");
    auto body = body_of(r);
    CHECK(body.at("status").as_int64() == static_cast<int>(r.result()));
    CHECK(body.contains("type"));
    CHECK(body.contains("title"));
    CHECK(body.contains("detail"));
    return std::string(body.at("code").as_string());
}

// A client whose every wait is bounded: each read or write fails the test
// after `limit` instead of hanging. Async Beast operations on a private
// io_context, run to completion one at a time.
class Client {
public:
    explicit Client(std::uint16_t port) : stream_(io_) {
        stream_.connect(tcp::endpoint{net::ip::address_v4::loopback(), port});
    }

    void send(std::string_view bytes) {
        beast::error_code result;
        stream_.expires_after(guard);
        net::async_write(stream_, net::buffer(bytes.data(), bytes.size()),
                         [&](beast::error_code ec, std::size_t) { result = ec; });
        run();
        REQUIRE_MESSAGE(!result, "write: " << result.message());
    }

    /// The next response, or nullopt if none came within `limit` (or the
    /// connection closed). A response to HEAD has no body: say so with `head`.
    std::optional<Response> read(std::chrono::milliseconds limit = guard, bool head = false) {
        http::response_parser<http::string_body> parser;
        parser.skip(head);
        parser.body_limit(boost::none);
        beast::error_code result;
        stream_.expires_after(limit);
        http::async_read(stream_, buffer_, parser, [&](beast::error_code ec, std::size_t) { result = ec; });
        run();
        last_error = result;
        if (result) return std::nullopt;
        return parser.release();
    }

    /// Everything the server sends until it closes the connection ("" and
    /// `last_error` timeout if it does not within `limit`).
    std::string read_until_close(std::chrono::milliseconds limit = guard) {
        std::string all(static_cast<char const*>(buffer_.data().data()), buffer_.size());
        buffer_.consume(buffer_.size());
        beast::error_code result;
        stream_.expires_after(limit);
        auto sink = net::dynamic_buffer(all);
        net::async_read(stream_, sink, [&](beast::error_code ec, std::size_t) { result = ec; });
        run();
        last_error = result;
        return all;
    }

    /// True if the server closed the connection within `limit`.
    bool closed(std::chrono::milliseconds limit = guard) {
        read_until_close(limit);
        return last_error == net::error::eof || last_error == net::error::connection_reset;
    }

    beast::error_code last_error;

private:
    void run() {
        io_.restart();
        io_.run();
    }

    net::io_context io_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
};

/// A request as bytes: "GET /health HTTP/1.1", Host, then `headers` and `body`.
inline std::string request_bytes(std::string_view method, std::string_view target, std::string_view headers = "",
                                 std::string_view body = "") {
    std::string bytes = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n";
    bytes += headers;
    if (!body.empty())
        bytes += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    return bytes + "\r\n" + std::string(body);
}

/// The value of an unlabelled series in Prometheus text, or -1.
inline double metric(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

} // namespace http_test
