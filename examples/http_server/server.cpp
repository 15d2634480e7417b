#include "server.hpp"

#include "protocol.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
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

// Whether a connection's end is the ordinary kind (the peer left, a timeout, a
// close of ours), not worth a log line.
bool ordinary_end(beast::error_code ec) {
    return ec == http::error::end_of_stream || ec == http::error::partial_message || ec == beast::error::timeout ||
           ec == net::error::operation_aborted || ec == net::error::bad_descriptor || ec == net::error::eof ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe;
}

bool is_parse_error(beast::error_code ec) { return ec.category() == make_error_code(http::error::bad_method).category(); }

// The probes a load balancer or orchestrator sends; answered even under overload.
bool is_probe(http::request_header<> const& header) {
    auto const target = header.target();
    return (header.method() == http::verb::get || header.method() == http::verb::head) &&
           (target == "/health" || target == "/health/live" || target == "/health/ready");
}

constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

} // namespace

struct Server::Impl : std::enable_shared_from_this<Impl> {
    Impl(Options const& o, Api& a, payments::application::Logger& l, net::io_context& context)
        : options(o), limits{o.body_limit, o.header_limit, o.uri_limit}, api(a), logger(l), io(context),
          acceptor(net::make_strand(io)) {}

    void accept();
    void admit(tcp::socket socket);
    std::shared_ptr<Session> longest_idle();
    void closed(bool overload) {
        (overload ? overloaded : open).fetch_sub(1);
        if (open.load() == 0 && overloaded.load() == 0) {
            std::lock_guard lock(mutex);
            all_closed.notify_all();
        }
    }

    Options options;
    Limits limits;
    Api& api;
    payments::application::Logger& logger;
    net::io_context& io;
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
    std::vector<std::thread> workers;
    std::optional<net::thread_pool> handlers; // runs requests; empty: the I/O threads do
    tcp::acceptor acceptor;
    std::atomic<std::size_t> open{0};       // regular sessions, at most max_connections (+ those being shed)
    std::atomic<std::size_t> overloaded{0}; // overload sessions, at most overload_connections
    std::atomic<bool> draining{false};
    std::mutex mutex;
    std::condition_variable all_closed;
    std::vector<std::weak_ptr<Session>> sessions; // Owned by: mutex
};

// Handles one HTTP connection, one request at a time: waits for the first
// byte of a request (idle), reads its header, checks the framing, reads the
// body, answers. An overload session answers one request: a probe, or 503.
class Session : public std::enable_shared_from_this<Session> {
public:
    // A new connection counts as idle (it has sent nothing) from the start.
    Session(tcp::socket&& socket, std::shared_ptr<Server::Impl> server, bool overload)
        : stream_(std::move(socket)), server_(std::move(server)), overload_(overload),
          idle_since_(std::chrono::steady_clock::now().time_since_epoch().count()) {}
    ~Session() { server_->closed(overload_); }

    void start() { net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::wait, shared_from_this())); }

    // Closes the connection if it is still waiting for a request: the server
    // needs its place for a new one.
    void shed() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            if (self->idle_.load()) self->close();
        });
    }

    // Ends the connection as soon as it is not needed: at once if it waits for
    // a request and none is on the wire, after a short window if a request is
    // half-sent, after the answer if one is being made. A pending read keeps
    // the deadline it was given (Boost 1.81), so it is cancelled and, if a
    // request has begun, read again with the short one.
    void drain() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            self->draining_ = true;
            if (self->idle_.load() || self->reading_) self->stream_.cancel();
        });
    }

    bool overload() const { return overload_; }
    bool idle() const { return idle_.load(); }
    std::int64_t idle_since() const { return idle_since_.load(); }
    std::atomic<bool> chosen_to_shed{false}; // set once, by the acceptor

private:
    // Waits for the first byte of the next request.
    void wait() {
        if (draining_) return buffer_.size() > 0 || bytes_waiting() ? read_header() : close();
        if (buffer_.size() > 0) return read_header(); // pipelined: already here
        idle_since_.store(std::chrono::steady_clock::now().time_since_epoch().count());
        idle_.store(true);
        stream_.expires_after(overload_ ? server_->options.overload_read_timeout : server_->options.idle_timeout);
        stream_.async_read_some(buffer_.prepare(4096), beast::bind_front_handler(&Session::on_wait, shared_from_this()));
    }

    void on_wait(beast::error_code ec, std::size_t n) {
        idle_.store(false);
        buffer_.commit(n);
        if (ec == net::error::operation_aborted && draining_) return wait();
        if (ec) return end(ec, "read");
        read_header();
    }

    // Bytes of a request are on the wire, not yet read.
    bool bytes_waiting() {
        beast::error_code ignored;
        return stream_.socket().is_open() && stream_.socket().available(ignored) > 0;
    }

    // How long what is left of a request may take to arrive.
    std::chrono::milliseconds read_timeout() const {
        auto const& o = server_->options;
        if (overload_) return std::min(o.read_timeout, o.overload_read_timeout);
        if (draining_) return std::min(o.read_timeout, o.drain_read_timeout);
        return o.read_timeout;
    }

    void read_header() {
        auto const received = buffer_.data();
        bool const some = buffer_.size() > 0;
        buffer_.consume(leading_empty_lines({static_cast<char const*>(received.data()), received.size()}));
        if (some && buffer_.size() == 0) return wait(); // only empty lines came
        reading_ = true;
        parser_.emplace();
        parser_->body_limit(server_->limits.body);
        parser_->header_limit(static_cast<std::uint32_t>(server_->limits.header));
        stream_.expires_after(read_timeout());
        http::async_read_header(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_header, shared_from_this()));
    }

    void on_header(beast::error_code ec, std::size_t) {
        if (rearm_for_drain(ec))
            return http::async_read_header(stream_, buffer_, *parser_,
                                           beast::bind_front_handler(&Session::on_header, shared_from_this()));
        if (ec) return failed_read(ec);
        auto const& header = parser_->get();
        if (auto refusal = check_header(header, server_->limits)) return refuse(*refusal);
        if (overload_ && !is_probe(header))
            return refuse({http::status::service_unavailable, "too_many_connections",
                           "the server has too many open connections; retry later"});
        // A request without a body (most GETs) is complete with its header: no
        // second read, no second timer.
        if (parser_->is_done()) return on_body({}, 0);
        if (!expects_continue(header)) return read_body(); // the header's deadline covers the body
        net::async_write(stream_, net::buffer(continue_line.data(), continue_line.size()),
                         [self = shared_from_this()](beast::error_code written, std::size_t) {
                             if (written) return self->end(written, "write");
                             // The client waited for us: its body gets a deadline of its own.
                             self->stream_.expires_after(self->read_timeout());
                             self->read_body();
                         });
    }

    void read_body() {
        http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
    }

    void on_body(beast::error_code ec, std::size_t) {
        if (rearm_for_drain(ec)) return read_body();
        if (ec) return failed_read(ec);
        reading_ = false;
        // A handler runs on the handler threads, so that the I/O threads keep
        // reading the others while it reads the store; a command (create, pay)
        // does not wait there for its commit: it is answered from the
        // commit's continuation. The session does nothing else until the
        // answer comes back to its strand (at once, when it was refused here).
        auto self = shared_from_this();
        server_->api.handle(
            parser_->get(),
            [self](std::function<void()> work) {
                if (self->overload_ || !self->server_->handlers) return work();
                net::post(*self->server_->handlers, std::move(work));
            },
            [self](Response response) {
                net::dispatch(self->stream_.get_executor(),
                              [self, response = std::move(response)]() mutable { self->answer(std::move(response)); });
            });
    }

    void answer(Response response) {
        if (draining_ || overload_ || server_->draining.load()) response.keep_alive(false);
        write(std::move(response));
    }

    // A read cancelled by drain() is read again, once, with the short deadline.
    bool rearm_for_drain(beast::error_code ec) {
        if (ec != net::error::operation_aborted || !draining_ || rearmed_ || !stream_.socket().is_open()) return false;
        rearmed_ = true;
        stream_.expires_after(read_timeout());
        return true;
    }

    void failed_read(beast::error_code ec) {
        if (is_parse_error(ec) && ec != http::error::end_of_stream && ec != http::error::partial_message)
            return refuse(refusal_for(ec, parser_->get(), server_->limits));
        end(ec, "read");
    }

    void refuse(Refusal const& refusal) {
        reading_ = false;
        write(server_->api.refuse(refusal, parser_ && parser_->got_some() ? &parser_->get() : nullptr));
    }

    void write(Response response) {
        auto message = std::make_shared<Response>(std::move(response));
        stream_.expires_after(server_->options.read_timeout);
        http::async_write(stream_, *message, [self = shared_from_this(), message](beast::error_code ec, std::size_t) {
            if (ec) return self->end(ec, "write");
            if (!message->keep_alive()) return self->close();
            self->wait();
        });
    }

    // The connection ends on an I/O error: reported once, here, unless ordinary.
    void end(beast::error_code ec, std::string_view during) {
        if (!ordinary_end(ec)) server_->logger.info("connection error", {{"during", during}, {"error", ec.message()}});
        close();
    }

    void close() {
        reading_ = false;
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.socket().close(ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<RequestParser> parser_;
    std::shared_ptr<Server::Impl> server_;
    bool const overload_;
    std::atomic<bool> idle_{true};          // waiting for the first byte of a request; read by the acceptor
    std::atomic<std::int64_t> idle_since_;  // steady clock ticks; read by the acceptor
    bool reading_ = false;                  // a request has begun and is being read
    bool draining_ = false;                 // close as soon as nothing is in flight
    bool rearmed_ = false;                  // the read was given the drain deadline
};

void Server::Impl::accept() {
    acceptor.async_accept(net::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
        if (ec) {
            if (ec != net::error::operation_aborted) self->logger.warn("accept failed", {{"error", ec.message()}});
            if (!self->acceptor.is_open()) return;
            return self->accept();
        }
        self->admit(std::move(socket));
        self->accept();
    });
}

// A new connection takes a free place, or the place of the connection idle
// longest, or becomes an overload connection, or (past those too) is closed.
void Server::Impl::admit(tcp::socket socket) {
    beast::error_code ignored;
    // Pipelined answers must not wait for the client's delayed ACK (Nagle).
    socket.set_option(tcp::no_delay(true), ignored);
    bool overload = false;
    if (open.load() >= options.max_connections) {
        if (auto victim = longest_idle()) victim->shed();
        else overload = true;
    }
    if (overload && overloaded.load() >= options.overload_connections) {
        // Info, not warn: a flood of these is batched, not written one by one.
        logger.info("connection refused", {{"reason", "too many connections"}});
        socket.close(ignored);
        return;
    }
    (overload ? overloaded : open).fetch_add(1);
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this(), overload);
    {
        std::lock_guard lock(mutex);
        std::erase_if(sessions, [](auto const& w) { return w.expired(); });
        sessions.push_back(session);
    }
    session->start();
}

std::shared_ptr<Session> Server::Impl::longest_idle() {
    std::shared_ptr<Session> found;
    std::lock_guard lock(mutex);
    for (auto const& weak : sessions) {
        auto session = weak.lock();
        if (!session || session->overload() || !session->idle() || session->chosen_to_shed.load()) continue;
        if (!found || session->idle_since() < found->idle_since()) found = std::move(session);
    }
    if (found) found->chosen_to_shed.store(true);
    return found;
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
    if (impl_->options.handler_threads > 0) impl_->handlers.emplace(impl_->options.handler_threads);
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
    return impl_->all_closed.wait_until(lock, deadline, [&] { return impl_->open.load() == 0; });
}

void Server::stop() {
    if (impl_->workers.empty()) return;
    impl_->work.reset();
    impl_->io.stop();
    for (auto& t : impl_->workers) t.join();
    impl_->workers.clear();
    if (impl_->handlers) impl_->handlers->join(); // what they post back is dropped with the stopped context
}

} // namespace http_server
