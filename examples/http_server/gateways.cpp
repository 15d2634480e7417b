#include "gateways.hpp"

#include <payments/infrastructure/gateway/http_gateway.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/system/clocks.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <thread>
#include <vector>

namespace http_server {

struct Gateways::Impl {
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work = boost::asio::make_work_guard(io);
    std::vector<std::pair<std::string, std::shared_ptr<payments::application::PaymentGateway>>> gateways;
    std::vector<std::thread> threads;

    ~Impl() {
        work.reset();
        io.stop();
        for (auto& t : threads) t.join();
    }
};

Gateways::Gateways(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Gateways::~Gateways() = default;

payments::Result<std::unique_ptr<Gateways>> Gateways::create(Options const& options,
                                                             payments::application::Logger& logger) {
    auto impl = std::make_unique<Impl>();
    int n = 0;
    for (std::string const& url : options.gateways) {
        payments::infrastructure::HttpGatewayOptions gateway;
        gateway.url = url;
        gateway.secret_key = options.gateway_key;
        gateway.ca_file = options.gateway_ca_file;
        gateway.deadline =
            std::chrono::duration_cast<std::chrono::milliseconds>(options.engine.processor.gateway_timeout);
        gateway.logger = &logger;
        gateway.name = "gateway-" + std::to_string(++n);
        auto created = payments::infrastructure::HttpGateway::create(impl->io.get_executor(), gateway);
        if (!created) return payments::reject(created.error().code, url + ": " + created.error().detail);
        impl->gateways.emplace_back(gateway.name, std::move(*created));
    }
    // The adapter's work is parsing and TLS; two threads keep one slow answer from delaying the rest.
    if (!impl->gateways.empty())
        for (int i = 0; i < 2; ++i) impl->threads.emplace_back([io = &impl->io] { io->run(); });
    return std::unique_ptr<Gateways>(new Gateways(std::move(impl)));
}

void Gateways::add_to(payments::EngineBuilder& builder) const {
    for (auto const& [name, gateway] : impl_->gateways) builder.gateway(name, gateway);
}

payments::Result<std::unique_ptr<payments::Engine>> build_engine(Options const& options,
                                                                 std::unique_ptr<Gateways>& gateways) {
    // The engine's clock and logger are built here so that the provider adapters log to the same place.
    auto clock = std::make_shared<payments::infrastructure::SystemClock>();
    auto logger = std::make_shared<payments::infrastructure::JsonLogger>(
        options.engine.log_output, options.engine.log_level, *clock, options.engine.log_flush_interval);
    auto created = Gateways::create(options, *logger);
    if (!created) return created.error();
    gateways = std::move(*created);
    auto builder = payments::Engine::builder(options.engine);
    builder.clock(clock).logger(logger);
    if (options.durable) builder.store(options.durable).idempotency_store(options.durable_keys);
    gateways->add_to(builder);
    return builder.build();
}

} // namespace http_server
