#include "server.hpp"

#include "awaitable.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>
#include <thread>
#include <vector>

namespace psp {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct PspServer::Impl {
    ServerOptions options;
    Provider& provider;
    std::optional<net::ssl::context> tls;
    std::unique_ptr<net::io_context> io = std::make_unique<net::io_context>();
    std::optional<tcp::acceptor> acceptor;
    std::vector<std::thread> threads;

    Impl(ServerOptions o, Provider& p) : options(std::move(o)), provider(p) {}
};

namespace {

Request to_request(http::request<http::string_body> const& req) {
    return Request{std::string(req.method_string()), std::string(req.target()), req.body(),
                   std::string(req[http::field::authorization]), std::string(req["Idempotency-Key"])};
}

// Serves one connection: requests in order, each answered as the provider's Action says.
template <class Stream> net::awaitable<void> serve(Stream& stream, Provider& provider) {
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(64 * 1024);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
        auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (read_ec) co_return;
        auto const& req = parser.get();
        Action action = provider.handle(to_request(req));
        if (action.how == Action::How::reset) {
            auto& socket = beast::get_lowest_layer(stream).socket();
            boost::system::error_code ignored;
            socket.set_option(net::socket_base::linger(true, 0), ignored);
            socket.close(ignored); // RST: the client sees a reset, not an answer
            co_return;
        }
        if (action.how == Action::How::hold) continue; // never answers; the next read ends when the client gives up
        if (action.delay.count() > 0) {
            net::steady_timer timer(co_await net::this_coro::executor, action.delay);
            co_await timer.async_wait(use_tuple);
        }
        http::response<http::string_body> res{static_cast<http::status>(action.status), req.version()};
        res.set(http::field::server, "payments-psp");
        res.set(http::field::content_type, action.content_type);
        res.keep_alive(req.keep_alive());
        res.body() = std::move(action.body);
        res.prepare_payload();
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
        auto [write_ec, write_n] = co_await http::async_write(stream, res, use_tuple);
        if (write_ec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    beast::get_lowest_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<void> serve_plain(tcp::socket socket, Provider& provider) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream, provider);
}

net::awaitable<void> serve_tls(tcp::socket socket, net::ssl::context& tls, Provider& provider) {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), tls);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    auto [ec] = co_await stream.async_handshake(net::ssl::stream_base::server, use_tuple);
    if (ec) co_return;
    co_await serve(stream, provider);
}

net::awaitable<void> accept_loop(PspServer::Impl* impl) {
    for (;;) {
        auto [ec, socket] = co_await impl->acceptor->async_accept(net::make_strand(*impl->io), use_tuple);
        if (ec == net::error::operation_aborted) co_return;
        if (ec) continue;
        auto executor = socket.get_executor();
        if (impl->tls)
            net::co_spawn(executor, serve_tls(std::move(socket), *impl->tls, impl->provider), net::detached);
        else
            net::co_spawn(executor, serve_plain(std::move(socket), impl->provider), net::detached);
    }
}

} // namespace

PspServer::PspServer(ServerOptions options, Provider& provider)
    : impl_(std::make_shared<Impl>(std::move(options), provider)) {}

PspServer::~PspServer() { stop(); }

std::uint16_t PspServer::start() {
    Impl& impl = *impl_;
    if (!impl.options.tls_cert.empty()) {
        impl.tls.emplace(net::ssl::context::tls_server);
        impl.tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                              net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                              net::ssl::context::no_tlsv1_1);
        impl.tls->use_certificate_chain_file(impl.options.tls_cert);
        impl.tls->use_private_key_file(impl.options.tls_key, net::ssl::context::pem);
    }
    tcp::endpoint endpoint(net::ip::make_address(impl.options.bind), impl.options.port);
    impl.acceptor.emplace(*impl.io);
    impl.acceptor->open(endpoint.protocol());
    impl.acceptor->set_option(net::socket_base::reuse_address(true));
    impl.acceptor->bind(endpoint);
    impl.acceptor->listen(net::socket_base::max_listen_connections);
    std::uint16_t const port = impl.acceptor->local_endpoint().port();
    net::co_spawn(*impl.io, accept_loop(&impl), net::detached);
    for (int i = 0; i < std::max(1, impl.options.threads); ++i)
        impl.threads.emplace_back([io = impl.io.get()] { io->run(); });
    return port;
}

void PspServer::stop() {
    if (!impl_->io) return;
    impl_->io->stop();
    for (auto& t : impl_->threads) t.join();
    impl_->threads.clear();
    // Destroying the io_context destroys the pending coroutines, which closes their sockets.
    impl_->acceptor.reset();
    impl_->io.reset();
}

} // namespace psp
