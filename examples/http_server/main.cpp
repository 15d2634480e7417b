// payments-server: the payments library over HTTP on :8080. See --help.

#include "gateways.hpp"
#include "server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>

int main(int argc, char** argv) {
    using namespace http_server;
    auto parsed = parse_options(argc, argv);
    if (auto* exit = std::get_if<Exit>(&parsed)) {
        std::fputs(exit->text.c_str(), exit->code == 0 ? stdout : stderr);
        return exit->code;
    }
    Options& options = std::get<Options>(parsed);
    if (auto opened = open_store(options); !opened) {
        std::fprintf(stderr, "payments-server: %s\n", opened.error().detail.c_str());
        return 2;
    }

    std::unique_ptr<Gateways> gateways; // outlives the engine: calls in flight answer into it
    auto engine = build_engine(options, gateways);
    if (!engine) {
        std::fprintf(stderr, "payments-server: %s\n", engine.error().detail.c_str());
        return 2;
    }
    auto& logger = (*engine)->logger();
    std::atomic<Readiness> readiness{Readiness::starting};
    Api api(**engine, readiness, options.admin_token, options.webhooks);
    Server server(options, api, logger);

    // Signals first, so that one arriving during start-up is not lost.
    boost::asio::io_context signals_io;
    boost::asio::signal_set signals(signals_io, SIGINT, SIGTERM);
    int received = 0;
    signals.async_wait([&](boost::system::error_code, int signal) { received = signal; });

    auto port = server.start();
    if (!port) {
        logger.error("cannot start", {{"detail", port.error().detail}});
        return 1;
    }
    readiness = Readiness::ready;
    logger.info("listening", {{"bind", options.bind}, {"port", static_cast<std::int64_t>(*port)}});

    signals_io.run();
    auto const deadline = std::chrono::steady_clock::now() + options.drain_timeout;
    readiness = Readiness::draining;
    // From here new commands answer 503 before anything is committed.
    (*engine)->service().stop_accepting();
    logger.info("draining", {{"signal", static_cast<std::int64_t>(received)}});
    bool const drained = server.drain(deadline);
    auto const left = std::max(std::chrono::steady_clock::duration::zero(), deadline - std::chrono::steady_clock::now());
    auto const report = (*engine)->shutdown(left);
    server.stop();
    logger.info("stopped", {{"connections_drained", drained ? std::string_view("yes") : std::string_view("no")},
                            {"scheduled_dropped", static_cast<std::int64_t>(report.scheduled_dropped)},
                            {"unsettled", static_cast<std::int64_t>(report.unsettled.total())}});
    // The engine and the store go before the server: a command whose commit
    // is answered only now (past the grace) is dropped with the engine's pool
    // or the store's queue (the store joins its writer), and the session it
    // holds is destroyed while the server's io_context still exists (review 26, G1).
    engine->reset();
    options.durable.reset();
    options.durable_keys.reset();
    return 0;
}
