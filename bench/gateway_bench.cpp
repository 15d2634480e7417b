// payments-bench gateway: HttpGateway's cost per charge against a raw Beast
// keep-alive request loop, both against the same in-process payments-psp
// (":memory:" ledger) in the same run, rounds alternating.

#include "figures.hpp"
#include "report.hpp"

#include "psp/server.hpp"

#include <payments/infrastructure/gateway/http_gateway.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace net = boost::asio;
namespace http = boost::beast::http;
using namespace payments;
using Clock = std::chrono::steady_clock;

namespace {

int key_counter = 0;

std::string next_key() { return "bench." + std::to_string(++key_counter); }

// Sequential charges through the adapter: microseconds per charge.
double adapter_round(infrastructure::HttpGateway& gateway, int n) {
    auto const amount = domain::Money::positive(1999, domain::Currency::usd()).value();
    auto const invoice = domain::InvoiceId::parse("inv_bench").value();
    auto const correlation = domain::CorrelationId::parse("req_bench").value();
    auto const start = Clock::now();
    for (int i = 0; i < n; ++i) {
        std::string key = next_key();
        std::promise<application::ChargeAnswer> answered;
        auto future = answered.get_future();
        gateway.charge({domain::PaymentId::parse("pay_" + std::to_string(key_counter)).value(), invoice, key, amount,
                        "pm_card_ok", correlation},
                       [&answered](application::ChargeAnswer a) { answered.set_value(std::move(a)); });
        if (!future.get().succeeded()) throw std::runtime_error("gateway: a charge through the adapter failed");
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / n;
}

// The same requests written by hand on one keep-alive connection, no parsing of the answer.
double raw_round(std::uint16_t port, int n) {
    net::io_context io;
    net::ip::tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), port});
    socket.set_option(net::ip::tcp::no_delay(true));
    boost::beast::flat_buffer buffer;
    auto const start = Clock::now();
    for (int i = 0; i < n; ++i) {
        std::string const key = next_key();
        http::request<http::string_body> req{http::verb::post, "/v1/payment_intents", 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::authorization, "Bearer sk_bench");
        req.set(http::field::content_type, "application/x-www-form-urlencoded");
        req.set("Idempotency-Key", key);
        req.body() =
            "amount=1999&currency=usd&payment_method=pm_card_ok&confirm=true&metadata%5Bgateway_key%5D=" + key +
            "&metadata%5Binvoice_id%5D=inv_bench&metadata%5Bpayment_id%5D=pay_" + std::to_string(key_counter);
        req.prepare_payload();
        http::write(socket, req);
        http::response<http::string_body> res;
        http::read(socket, buffer, res);
        if (res.result_int() != 200) throw std::runtime_error("gateway: a raw charge answered " + std::to_string(res.result_int()));
    }
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count() / n;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

namespace bench {

void figure_gateway(Options const& options) {
    int const n = options.quick ? 50 : 2000;
    int const rounds = options.quick ? 1 : 5;
    psp::ProviderOptions provider_options; // ":memory:" ledger: the provider's disk is not what is measured
    psp::Provider provider(provider_options);
    psp::ServerOptions server_options;
    server_options.threads = 1;
    psp::PspServer server(server_options, provider);
    std::uint16_t const port = server.start();

    net::io_context io;
    auto work = net::make_work_guard(io);
    std::thread thread([&io] { io.run(); });
    infrastructure::HttpGatewayOptions gateway_options;
    gateway_options.url = "http://127.0.0.1:" + std::to_string(port);
    gateway_options.secret_key = "sk_bench";
    auto gateway = infrastructure::HttpGateway::create(io.get_executor(), gateway_options).value();

    adapter_round(*gateway, n / 10); // warm-up: connection, allocator, SQLite pages
    raw_round(port, n / 10);
    std::vector<double> adapter, raw;
    for (int round = 0; round < rounds; ++round) {
        adapter.push_back(adapter_round(*gateway, n));
        raw.push_back(raw_round(port, n));
    }
    std::fprintf(stderr, "gateway: %d sequential charges per round, median of %d alternating rounds; "
                         "connections opened %zu, reused %zu\n",
                 n, rounds, gateway->stats().connections_opened, gateway->stats().connections_reused);
    gateway.reset();
    work.reset();
    io.stop();
    thread.join();
    // The adapter form-encodes, parses the JSON answer, runs a coroutine on
    // its strand and arms a deadline per call; the raw loop does none of it.
    print({"HttpGateway per charge (vs raw Beast loop)", median(adapter), median(raw), "us", Goal::at_most, 2.0});
}

} // namespace bench
