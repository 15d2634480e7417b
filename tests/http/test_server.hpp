#pragma once
// A server with its engine on an ephemeral loopback port, and Beast clients
// for it: the fixtures of the HTTP tests. Defined in test_server.cpp,
// compiled once: the Beast exchanges are the costly part of these tests' build.
#include "gateways.hpp"
#include "server.hpp"

#include <payments/domain/events.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/json/object.hpp>

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
    explicit TestServer(Options tweak = {}, std::FILE* log = nullptr);
    // Stops as main() does on SIGTERM: the connections and the engine's work
    // in flight share options.drain_timeout. A test that leaves a gateway
    // call unanswered on purpose sets it short, so as not to wait for it.
    ~TestServer();

    tcp::socket connect();

    Response send(tcp::socket& socket, http::verb verb, std::string target, std::string body = {},
                  std::vector<std::pair<std::string, std::string>> headers = {});

    Response call(http::verb verb, std::string target, std::string body = {},
                  std::vector<std::pair<std::string, std::string>> headers = {});

    // Sends raw bytes and returns everything the server answers before it closes.
    std::string raw(std::string const& bytes);

    std::string create(std::int64_t amount = 1000);

    bool wait_settled(int n);

    void bump();

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

json::object body_of(Response const& r);

// The problem+json code of an error answer (and checks its shape).
std::string code_of(Response const& r);

// A client whose every wait is bounded: each read or write fails the test
// after `limit` instead of hanging. Async Beast operations on a private
// io_context, run to completion one at a time.
class Client {
public:
    explicit Client(std::uint16_t port);

    void send(std::string_view bytes);

    /// The next response, or nullopt if none came within `limit` (or the
    /// connection closed). A response to HEAD has no body: say so with `head`.
    std::optional<Response> read(std::chrono::milliseconds limit = guard, bool head = false);

    /// Everything the server sends until it closes the connection ("" and
    /// `last_error` timeout if it does not within `limit`).
    std::string read_until_close(std::chrono::milliseconds limit = guard);

    /// True if the server closed the connection within `limit`.
    bool closed(std::chrono::milliseconds limit = guard);

    beast::error_code last_error;

private:
    void run();

    net::io_context io_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
};

/// A request as bytes: "GET /health HTTP/1.1", Host, then `headers` and `body`.
std::string request_bytes(std::string_view method, std::string_view target, std::string_view headers = "",
                          std::string_view body = "");

/// The value of an unlabelled series in Prometheus text, or -1.
double metric(std::string const& text, std::string const& name);

} // namespace http_test
