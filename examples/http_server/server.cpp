#include "server.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace http_server {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

class Session;

namespace {

unsigned worker_threads(Options const& options) {
    return options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
}

} // namespace

struct Server::Impl : std::enable_shared_from_this<Impl> {
    Impl(Options const& o, Api& a, payments::application::Logger& l, net::io_context& context)
        : options(o), api(a), logger(l), io(context), acceptor(net::make_strand(io)) {}

    void accept();
    void closed() {
        if (open.fetch_sub(1) == 1) {
            std::lock_guard lock(mutex);
            idle.notify_all();
        }
    }

    Options options;
    Api& api;
    payments::application::Logger& logger;
    net::io_context& io;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
    std::vector<std::thread> workers;
    tcp::acceptor acceptor;
    std::atomic<std::size_t> open{0};
    std::atomic<bool> draining{false};
    std::mutex mutex;
    std::condition_variable idle;
    std::vector<std::weak_ptr<Session>> sessions; // Owned by: mutex
};

// Handles one HTTP connection, one request at a time.
class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket&& socket, std::shared_ptr<Server::Impl> server)
        : stream_(std::move(socket)), server_(std::move(server)) {}
    ~Session() { server_->closed(); }

    void start() { net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read, shared_from_this())); }

    // Too many connections: answer 503 and close.
    void refuse() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            self->write(Api::problem(http::status::service_unavailable, "too_many_connections",
                                     "the server has too many open connections; retry later", 11));
        });
    }

    // Ends the connection after the current answer. A connection waiting for a
    // request gets a short deadline instead of closing at once: a request
    // already on the wire is still served, an idle connection expires.
    void drain() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            self->draining_ = true;
            if (!self->busy_) self->expire_soon();
        });
    }

private:
    // While draining, a connection told "keep-alive" may already be sending
    // its next request: it gets a short window, not an abrupt close.
    void expire_soon() {
        stream_.expires_after(std::min<std::chrono::steady_clock::duration>(server_->options.read_timeout,
                                                                            std::chrono::milliseconds(500)));
    }

    void read() {
        parser_.emplace();
        parser_->body_limit(server_->options.body_limit);
        parser_->header_limit(static_cast<std::uint32_t>(server_->options.header_limit));
        if (!draining_) stream_.expires_after(server_->options.read_timeout);
        http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
            ec == net::error::bad_descriptor)
            return close();
        if (ec == http::error::body_limit)
            return write(Api::problem(http::status::payload_too_large, "payload_too_large",
                                      "the body is larger than " + std::to_string(server_->options.body_limit) + " bytes",
                                      11));
        if (ec == http::error::header_limit)
            return write(Api::problem(http::status::request_header_fields_too_large, "headers_too_large",
                                      "the header block is too large", 11));
        if (ec) {
            if (parser_->got_some())
                return write(Api::problem(http::status::bad_request, "bad_request", "malformed HTTP: " + ec.message(), 11));
            return close();
        }
        busy_ = true;
        Response response = server_->api.handle(parser_->get());
        if (draining_ || server_->draining.load()) response.keep_alive(false);
        write(std::move(response));
    }

    void write(Response response) {
        auto message = std::make_shared<Response>(std::move(response));
        stream_.expires_after(server_->options.read_timeout);
        http::async_write(stream_, *message,
                          [self = shared_from_this(), message](beast::error_code ec, std::size_t) {
                              self->busy_ = false;
                              if (ec || !message->keep_alive()) return self->close();
                              if (self->draining_) self->expire_soon();
                              self->read();
                          });
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Server::Impl> server_;
    bool busy_ = false;     // a request is being answered
    bool draining_ = false; // close after the current answer
};

void Server::Impl::accept() {
    acceptor.async_accept(net::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (ec) {
            if (ec != net::error::operation_aborted) self->logger.warn("accept failed", {{"error", ec.message()}});
            if (!self->acceptor.is_open()) return;
            return self->accept();
        }
        bool const over = self->open.fetch_add(1) >= self->options.max_connections;
        auto session = std::make_shared<Session>(std::move(socket), self);
        if (over) {
            session->refuse();
        } else {
            {
                std::lock_guard lock(self->mutex);
                std::erase_if(self->sessions, [](auto const& w) { return w.expired(); });
                self->sessions.push_back(session);
            }
            session->start();
        }
        self->accept();
    });
}

Server::Server(Options const& options, Api& api, payments::application::Logger& logger)
    : io_(std::make_unique<net::io_context>(static_cast<int>(worker_threads(options)))),
      impl_(std::make_shared<Impl>(options, api, logger, *io_)) {}

Server::~Server() { stop(); }

payments::Result<std::uint16_t> Server::start() {
    beast::error_code ec;
    auto const address = net::ip::make_address(impl_->options.bind, ec);
    if (ec) return payments::reject(payments::ErrorCode::invalid_argument, "bad bind address: " + ec.message());
    tcp::endpoint const endpoint{address, impl_->options.port};
    auto& acceptor = impl_->acceptor;
    if (acceptor.open(endpoint.protocol(), ec); !ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return payments::reject(payments::ErrorCode::unavailable, "cannot listen on " + impl_->options.bind + ":" +
                                                                         std::to_string(impl_->options.port) + ": " + ec.message());
    impl_->work.emplace(impl_->io.get_executor());
    impl_->accept();
    for (unsigned i = 0; i < worker_threads(impl_->options); ++i) impl_->workers.emplace_back([impl = impl_] { impl->io.run(); });
    return acceptor.local_endpoint().port();
}

bool Server::drain(std::chrono::steady_clock::time_point deadline) {
    impl_->draining.store(true);
    net::dispatch(impl_->acceptor.get_executor(), [impl = impl_] {
        beast::error_code ignored;
        impl->acceptor.close(ignored);
    });
    std::vector<std::shared_ptr<Session>> live;
    {
        std::lock_guard lock(impl_->mutex);
        for (auto& weak : impl_->sessions)
            if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    for (auto& session : live) session->drain();
    live.clear();
    std::unique_lock lock(impl_->mutex);
    return impl_->idle.wait_until(lock, deadline, [&] { return impl_->open.load() == 0; });
}

void Server::stop() {
    if (impl_->workers.empty()) return;
    impl_->work.reset();
    impl_->io.stop();
    for (auto& t : impl_->workers) t.join();
    impl_->workers.clear();
}

} // namespace http_server
