// payments-psp: a payment service provider simulator speaking the subset of
// Stripe's PaymentIntents API in docs/psp-protocol.md. See --help.

#include "server.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>

int main(int argc, char **argv) {
    psp::ProviderOptions provider_options;
    psp::ServerOptions server_options;
    auto &faults = provider_options.faults;
    std::int64_t latency_min = 0, latency_max = 0, late_answer = 30'000, booking_delay = 20'000, search_lag = 0,
                 processing = 60'000;

    CLI::App app{"payments-psp: a payment provider simulator (a Stripe PaymentIntents subset, docs/psp-protocol.md)"};
    app.add_option("--port", server_options.port, "port to listen on (0: ephemeral, printed on stdout)");
    app.add_option("--bind", server_options.bind, "address to listen on");
    app.add_option("--ledger", provider_options.ledger_path, "SQLite ledger file (survives restarts)")->required();
    app.add_option("--threads", server_options.threads, "I/O threads")->check(CLI::Range(1, 64));
    app.add_option("--secret-key", provider_options.secret_key, "the only bearer key accepted (default: any)");
    app.add_option("--tls-cert", server_options.tls_cert, "PEM certificate chain: serve HTTPS")
        ->check(CLI::ExistingFile);
    app.add_option("--tls-key", server_options.tls_key, "PEM private key for --tls-cert")->check(CLI::ExistingFile);
    app.add_option("--seed", faults.seed, "seed of the fault draws");
    app.add_option("--error-rate", faults.error_rate, "answer 500 before executing")->check(CLI::Range(0.0, 1.0));
    app.add_option("--rate-limit-rate", faults.rate_limit_rate, "answer 429 before executing")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--reset-rate", faults.reset_rate, "reset the connection before executing")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--lose-answer-rate", faults.lose_answer_rate, "book, then reset instead of answering")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--late-booking-rate", faults.late_booking_rate, "never answer; book --booking-delay-ms later")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--latency-min-ms", latency_min, "least latency of an answer")->check(CLI::NonNegativeNumber);
    app.add_option("--latency-max-ms", latency_max, "most latency of an answer")->check(CLI::NonNegativeNumber);
    app.add_option("--late-answer-delay-ms", late_answer, "pm_card_late_answer answers this late")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--booking-delay-ms", booking_delay, "late bookings happen this much later")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--search-lag-ms", search_lag, "the search sees a booking this much later")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--processing-ms", processing, "pm_card_processing stays 'processing' this long")
        ->check(CLI::NonNegativeNumber);
    CLI11_PARSE(app, argc, argv);
    if (server_options.tls_cert.empty() != server_options.tls_key.empty()) {
        std::cerr << "payments-psp: --tls-cert and --tls-key go together\n";
        return 2;
    }
    using std::chrono::milliseconds;
    faults.latency_min = milliseconds(latency_min);
    faults.latency_max = milliseconds(latency_max);
    provider_options.late_answer_delay = milliseconds(late_answer);
    provider_options.booking_delay = milliseconds(booking_delay);
    provider_options.search_lag = milliseconds(search_lag);
    provider_options.processing_time = milliseconds(processing);

    boost::asio::io_context signals_io;
    boost::asio::signal_set signals(signals_io, SIGINT, SIGTERM);
    signals.async_wait([](boost::system::error_code, int) {});
    try {
        psp::Provider provider(provider_options);
        psp::PspServer server(server_options, provider);
        std::uint16_t const port = server.start();
        std::cout << "payments-psp listening on port " << port << std::endl;
        signals_io.run();
        server.stop();
    } catch (std::exception const &e) {
        std::cerr << "payments-psp: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
