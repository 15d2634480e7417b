#pragma once
// The transport of HttpGateway: URL parsing, a keep-alive connection pool and
// one request/response exchange that records whether the request may have
// reached the provider. Private to the library.

#include <payments/error.hpp>
#include <payments/infrastructure/gateway/http_gateway.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace payments::infrastructure::http_detail {

/// The parts of a provider's base URL.
struct Endpoint {
    bool tls = false;
    std::string host;
    std::string port;
    std::string prefix; ///< path prefix without a trailing '/', may be empty
};

/// `http(s)://host[:port][/prefix]`; IPv6 hosts in brackets.
Result<Endpoint> parse_url(std::string_view url);

/// Whether any byte of the request may have reached the provider.
enum class Reach { not_sent, maybe_sent };

/// What one exchange produced: a response, or the error and where it happened.
struct Exchange {
    Reach reach = Reach::not_sent;
    boost::system::error_code error;
    std::string_view stage; ///< "connect", "tls handshake", "write", "read", "deadline"
    std::optional<boost::beast::http::response<boost::beast::http::string_body>> response;
};

struct Connection;

/// Keep-alive connections to one endpoint, bounded by `max_idle` idle ones. Thread-safe.
class ConnectionPool {
public:
    ConnectionPool(boost::asio::any_io_executor executor, Endpoint endpoint,
                   std::optional<boost::asio::ssl::context> tls, std::size_t max_idle);
    ~ConnectionPool();

    /// Sends the request and reads the answer by `deadline`. With `retry_stale`, a
    /// pooled connection that fails before any byte of the answer is replaced once by
    /// a fresh one and the same request sent again (only for requests that are safe
    /// to repeat: an idempotency key or a GET).
    boost::asio::awaitable<Exchange> round_trip(boost::beast::http::request<boost::beast::http::string_body> request,
                                                std::chrono::steady_clock::time_point deadline, bool retry_stale);

    Endpoint const &endpoint() const noexcept { return endpoint_; }
    HttpGatewayStats stats() const;

private:
    boost::asio::awaitable<std::unique_ptr<Connection>> connect(std::chrono::steady_clock::time_point deadline,
                                                                Exchange &exchange);
    std::unique_ptr<Connection> take_idle();
    void give_back(std::unique_ptr<Connection> connection);

    boost::asio::any_io_executor executor_;
    Endpoint const endpoint_;
    std::optional<boost::asio::ssl::context> tls_;
    std::size_t const max_idle_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Connection>> idle_; // Owned by: mutex_
    std::atomic<std::size_t> opened_{0}, reused_{0}, stale_retries_{0};
};

} // namespace payments::infrastructure::http_detail
