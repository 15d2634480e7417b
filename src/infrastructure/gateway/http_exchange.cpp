#include "http_exchange.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <charconv>

namespace payments::infrastructure::http_detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
constexpr std::size_t max_answer_bytes = 1024 * 1024;

// The ways a kept-alive connection ends when the server closed it while it was idle.
bool closed_by_peer(error_code const &ec) {
    return ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == net::ssl::error::stream_truncated;
}

bool is_ip_literal(std::string const &host) {
    error_code ec;
    net::ip::make_address(host, ec);
    return !ec;
}

template <class Stream>
net::awaitable<std::pair<error_code, std::string_view>>
send_and_read(Stream &stream, beast::flat_buffer &buffer, http::request<http::string_body> const &request,
              http::response_parser<http::string_body> &parser) {
    auto [write_error, written] = co_await http::async_write(stream, request, use_tuple);
    if (write_error) co_return std::pair{write_error, std::string_view("write")};
    auto [read_error, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (read_error) co_return std::pair{read_error, std::string_view("read")};
    co_return std::pair{error_code{}, std::string_view{}};
}

} // namespace

// One keep-alive connection, plain or TLS; used by one call at a time.
struct Connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;

    beast::tcp_stream &lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

Result<Endpoint> parse_url(std::string_view url) {
    Endpoint endpoint;
    if (url.starts_with("https://")) {
        endpoint.tls = true;
        url.remove_prefix(8);
    } else if (url.starts_with("http://")) {
        url.remove_prefix(7);
    } else {
        return reject(ErrorCode::invalid_argument, "gateway URL must start with http:// or https://");
    }
    auto const slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
    while (path.ends_with('/')) path.remove_suffix(1);
    if (authority.find('@') != std::string_view::npos)
        return reject(ErrorCode::invalid_argument, "gateway URL must not carry credentials (use the gateway key)");
    std::string_view port = endpoint.tls ? "443" : "80";
    if (authority.starts_with('[')) { // [v6]:port
        auto const close = authority.find(']');
        if (close == std::string_view::npos) return reject(ErrorCode::invalid_argument, "gateway URL: unclosed '['");
        endpoint.host = std::string(authority.substr(1, close - 1));
        std::string_view rest = authority.substr(close + 1);
        if (rest.starts_with(':'))
            port = rest.substr(1);
        else if (!rest.empty())
            return reject(ErrorCode::invalid_argument, "gateway URL: bad authority");
    } else {
        auto const colon = authority.find(':');
        endpoint.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    }
    unsigned number = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (endpoint.host.empty() || ec != std::errc{} || end != port.data() + port.size() || number == 0 || number > 65535)
        return reject(ErrorCode::invalid_argument, "gateway URL: bad host or port");
    if (path.find_first_of("?#") != std::string_view::npos)
        return reject(ErrorCode::invalid_argument, "gateway URL must not have a query or fragment");
    endpoint.port = std::string(port);
    endpoint.prefix = std::string(path);
    return endpoint;
}

ConnectionPool::ConnectionPool(net::any_io_executor executor, Endpoint endpoint, std::optional<net::ssl::context> tls,
                               std::size_t max_idle)
    : executor_(std::move(executor)), endpoint_(std::move(endpoint)), tls_(std::move(tls)), max_idle_(max_idle) {}

ConnectionPool::~ConnectionPool() = default;

HttpGatewayStats ConnectionPool::stats() const { return {opened_.load(), reused_.load(), stale_retries_.load()}; }

std::unique_ptr<Connection> ConnectionPool::take_idle() {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) return nullptr;
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    return connection;
}

void ConnectionPool::give_back(std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(connection));
}

net::awaitable<std::unique_ptr<Connection>> ConnectionPool::connect(std::chrono::steady_clock::time_point deadline,
                                                                    Exchange &exchange) {
    tcp::resolver resolver(executor_);
    auto [resolve_error, results] = co_await resolver.async_resolve(endpoint_.host, endpoint_.port, use_tuple);
    if (resolve_error) {
        exchange.error = resolve_error;
        exchange.stage = "resolve";
        co_return nullptr;
    }
    beast::tcp_stream stream(executor_);
    stream.expires_at(deadline);
    auto [connect_error, peer] = co_await stream.async_connect(results, use_tuple);
    if (connect_error) {
        exchange.error = connect_error;
        exchange.stage = "connect";
        co_return nullptr;
    }
    error_code ignored;
    stream.socket().set_option(tcp::no_delay(true), ignored);
    auto connection = std::make_unique<Connection>();
    ++opened_;
    if (!tls_) {
        connection->plain.emplace(std::move(stream));
        co_return connection;
    }
    auto &tls = connection->tls.emplace(std::move(stream), *tls_);
    // SNI names a host, never an address (RFC 6066 §3).
    if (!is_ip_literal(endpoint_.host)) // SSL_set_tlsext_host_name, without the macro's C cast
        SSL_ctrl(tls.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char *>(endpoint_.host.c_str()));
    tls.set_verify_mode(net::ssl::verify_peer);
    tls.set_verify_callback(net::ssl::host_name_verification(endpoint_.host));
    auto [handshake_error] = co_await tls.async_handshake(net::ssl::stream_base::client, use_tuple);
    if (handshake_error) {
        exchange.error = handshake_error;
        exchange.stage = "tls handshake";
        co_return nullptr;
    }
    co_return connection;
}

net::awaitable<Exchange> ConnectionPool::round_trip(http::request<http::string_body> request,
                                                    std::chrono::steady_clock::time_point deadline, bool retry_stale) {
    Exchange exchange;
    for (int attempt = 0;; ++attempt) {
        std::unique_ptr<Connection> connection = attempt == 0 ? take_idle() : nullptr;
        bool const reused = connection != nullptr;
        if (reused)
            ++reused_;
        else if (!(connection = co_await connect(deadline, exchange)))
            co_return exchange; // reach unchanged
        connection->lowest().expires_at(deadline);
        // From the first byte written, the provider may act on the request.
        exchange.reach = Reach::maybe_sent;
        http::response_parser<http::string_body> parser;
        parser.body_limit(max_answer_bytes);
        auto [error, stage] = connection->tls
                                  ? co_await send_and_read(*connection->tls, connection->buffer, request, parser)
                                  : co_await send_and_read(*connection->plain, connection->buffer, request, parser);
        if (!error) {
            exchange.error = {};
            exchange.stage = {};
            exchange.response = parser.release();
            if (exchange.response->keep_alive()) give_back(std::move(connection));
            co_return exchange;
        }
        // The one retry of docs/psp-protocol.md: a pooled connection the server closed
        // before answering a byte; the same request (same key) once more on a fresh one.
        if (retry_stale && reused && attempt == 0 && !parser.got_some() && closed_by_peer(error)) {
            ++stale_retries_;
            continue;
        }
        exchange.error = error;
        exchange.stage = stage;
        co_return exchange;
    }
}

} // namespace payments::infrastructure::http_detail
