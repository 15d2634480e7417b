#include "test_server.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

namespace http_test {

TestServer::TestServer(Options tweak, std::FILE* log) : options(std::move(tweak)) {
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

TestServer::~TestServer() {
    settled_paid.reset();
    settled_failed.reset();
    auto const deadline = std::chrono::steady_clock::now() + options.drain_timeout;
    server->drain(deadline);
    engine->shutdown(std::max(std::chrono::steady_clock::duration::zero(), deadline - std::chrono::steady_clock::now()));
    server->stop();
    // As main() does: the engine and the store before the server, whose sessions a late command may hold.
    engine.reset();
    options.durable.reset();
    options.durable_keys.reset();
}

tcp::socket TestServer::connect() {
    tcp::socket socket(io);
    socket.connect({net::ip::address_v4::loopback(), port});
    return socket;
}

Response TestServer::send(tcp::socket& socket, http::verb verb, std::string target, std::string body,
                          std::vector<std::pair<std::string, std::string>> headers) {
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

Response TestServer::call(http::verb verb, std::string target, std::string body,
                          std::vector<std::pair<std::string, std::string>> headers) {
    auto socket = connect();
    return send(socket, verb, std::move(target), std::move(body), std::move(headers));
}

std::string TestServer::raw(std::string const& bytes) {
    auto socket = connect();
    net::write(socket, net::buffer(bytes));
    std::string answer;
    beast::error_code ec;
    net::read(socket, net::dynamic_buffer(answer), ec);
    return answer;
}

std::string TestServer::create(std::int64_t amount) {
    auto r = call(http::verb::post, "/invoices", R"({"amount":)" + std::to_string(amount) + "}");
    REQUIRE(r.result() == http::status::created);
    return std::string(json::parse(r.body()).at("id").as_string());
}

bool TestServer::wait_settled(int n) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, guard, [&] { return settled >= n; });
}

void TestServer::bump() {
    std::lock_guard lock(mutex);
    ++settled;
    cv.notify_all();
}

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

Client::Client(std::uint16_t port) : stream_(io_) {
    stream_.connect(tcp::endpoint{net::ip::address_v4::loopback(), port});
}

void Client::send(std::string_view bytes) {
    beast::error_code result;
    stream_.expires_after(guard);
    net::async_write(stream_, net::buffer(bytes.data(), bytes.size()),
                     [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    REQUIRE_MESSAGE(!result, "write: " << result.message());
}

std::optional<Response> Client::read(std::chrono::milliseconds limit, bool head) {
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

std::string Client::read_until_close(std::chrono::milliseconds limit) {
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

bool Client::closed(std::chrono::milliseconds limit) {
    read_until_close(limit);
    return last_error == net::error::eof || last_error == net::error::connection_reset;
}

void Client::run() {
    io_.restart();
    io_.run();
}

std::string request_bytes(std::string_view method, std::string_view target, std::string_view headers,
                          std::string_view body) {
    std::string bytes = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n";
    bytes += headers;
    if (!body.empty())
        bytes += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    return bytes + "\r\n" + std::string(body);
}

double metric(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

} // namespace http_test
