// bench-minimal-server PORT THREADS: the baseline of the server figures. A
// Beast keep-alive HTTP/1.1 server that answers every request with one fixed
// small JSON body; what any server on these libraries costs at least.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr std::string_view body = R"({"id":"inv_b1","status":"PROCESSING","amount":1000,"currency":"USD"})";

// Reads requests and answers each with the fixed body until the peer closes.
class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket&& socket) : stream_(std::move(socket)) {}

    void read() {
        request_ = {};
        http::async_read(stream_, buffer_, request_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
    }

private:
    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return;
        response_ = {http::status::ok, request_.version()};
        response_.set(http::field::content_type, "application/json");
        response_.keep_alive(request_.keep_alive());
        response_.body() = body;
        response_.prepare_payload();
        http::async_write(stream_, response_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
    }

    void on_write(beast::error_code ec, std::size_t) {
        if (ec || !response_.keep_alive()) return;
        read();
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    http::response<http::string_body> response_;
};

void accept(tcp::acceptor& acceptor, net::io_context& io) {
    acceptor.async_accept(net::make_strand(io), [&](beast::error_code ec, tcp::socket socket) {
        if (!ec) std::make_shared<Session>(std::move(socket))->read();
        accept(acceptor, io);
    });
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: bench-minimal-server PORT THREADS\n");
        return 2;
    }
    auto const port = static_cast<unsigned short>(std::atoi(argv[1]));
    int const threads = std::max(1, std::atoi(argv[2]));
    net::io_context io(threads);
    tcp::acceptor acceptor(io, {net::ip::make_address("127.0.0.1"), port});
    accept(acceptor, io);
    net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](beast::error_code, int) { io.stop(); });
    std::vector<std::thread> workers;
    for (int i = 1; i < threads; ++i) workers.emplace_back([&] { io.run(); });
    io.run();
    for (auto& worker : workers) worker.join();
    return 0;
}
