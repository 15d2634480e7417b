#pragma once
// A provider simulator (examples/psp) in-process on an ephemeral loopback port,
// with a clock the test drives, and an HttpGateway pointed at it.

#include "support/builders.hpp"
#include "support/temp_dir.hpp"

#include <payments/infrastructure/gateway/http_gateway.hpp>

#include "psp/server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

namespace test {

// The provider in-process: its own ledger file, clock and threads.
struct Psp {
    std::atomic<std::int64_t> now_ms{1'764'100'000'000};
    psp::ProviderOptions options;
    psp::ServerOptions server_options;
    std::unique_ptr<psp::Provider> provider;
    std::unique_ptr<psp::PspServer> server;
    std::uint16_t port = 0;

    explicit Psp(std::string ledger, psp::FaultOptions faults = {}) {
        options.ledger_path = std::move(ledger);
        options.faults = faults;
        options.booking_delay = std::chrono::seconds(20);
        options.late_answer_delay = std::chrono::seconds(30);
        options.now_ms = [this] { return now_ms.load(); };
    }
    ~Psp() { stop(); }

    std::uint16_t start() {
        provider = std::make_unique<psp::Provider>(options);
        server_options.port = port; // the same port again after a restart
        server = std::make_unique<psp::PspServer>(server_options, *provider);
        port = server->start();
        return port;
    }
    void stop() {
        server.reset();
        provider.reset();
    }
    void advance(std::chrono::milliseconds by) { now_ms += by.count(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
    std::int64_t charges_total() const { return provider->ledger().totals(now_ms.load()).charges; }
};

// Threads for the gateway's calls.
struct IoThreads {
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work = boost::asio::make_work_guard(io);
    std::vector<std::thread> threads;
    explicit IoThreads(int n = 2) {
        for (int i = 0; i < n; ++i) threads.emplace_back([this] { io.run(); });
    }
    ~IoThreads() {
        work.reset();
        io.stop();
        for (auto& t : threads) t.join();
    }
};

inline application::ChargeRequest a_charge(std::string key, std::string method, std::string invoice = "inv_psp",
                                           std::int64_t cents = 1999) {
    return application::ChargeRequest{PaymentId::parse("pay_" + key).value(), InvoiceId::parse(invoice).value(),
                                      key, usd(cents), std::move(method), CorrelationId::parse("req_psp").value()};
}

// The gateway's answer; the wait is a guard that fails the test, not a pause.
inline application::ChargeAnswer charge(application::PaymentGateway& gateway, application::ChargeRequest request) {
    std::promise<application::ChargeAnswer> answered;
    auto future = answered.get_future();
    gateway.charge(std::move(request), [&answered](application::ChargeAnswer a) { answered.set_value(std::move(a)); });
    REQUIRE(future.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    return future.get();
}

inline application::ChargeStatus lookup(application::PaymentGateway& gateway, std::string key) {
    std::promise<application::ChargeStatus> answered;
    auto future = answered.get_future();
    gateway.lookup(std::move(key), [&answered](application::ChargeStatus s) { answered.set_value(std::move(s)); });
    REQUIRE(future.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    return future.get();
}

// Options for a gateway to `url`, with a test secret key.
inline infrastructure::HttpGatewayOptions options_for(std::string url) {
    infrastructure::HttpGatewayOptions options;
    options.url = std::move(url);
    options.secret_key = "sk_test_secret_4eC39HqLyjWDarjtT1zdp7dc";
    return options;
}

// A provider whose every charge request meets one fault.
inline psp::FaultOptions always(double psp::FaultOptions::*rate) {
    psp::FaultOptions faults;
    faults.*rate = 1.0;
    return faults;
}

inline std::shared_ptr<infrastructure::HttpGateway> a_gateway(IoThreads& io, infrastructure::HttpGatewayOptions options) {
    auto gateway = infrastructure::HttpGateway::create(io.io.get_executor(), std::move(options));
    REQUIRE(gateway);
    return *gateway;
}

// "CHARGED", or the failure's kind ("DECLINED", "TRANSIENT", "UNKNOWN_OUTCOME"), so that a failed check reads.
inline std::string kind_of(application::ChargeAnswer const& answer) {
    return answer.failure ? std::string(to_string(answer.failure->kind)) : std::string("CHARGED");
}

inline std::string state_of(application::ChargeStatus const& status) {
    return std::string(application::to_string(status.state));
}

} // namespace test
