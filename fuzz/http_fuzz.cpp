// libFuzzer target: arbitrary bytes as the input of one connection, through
// the server's request parsing, framing checks, routing and JSON decoding to
// the responses, against an in-memory engine. scripts/fuzz builds and runs it.
#include "protocol.hpp"

#include <payments/engine.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace {

// One engine and API for the whole run: state (invoices, idempotency keys)
// carries over between inputs, as it does between a server's connections.
struct Fixture {
    Fixture() {
        payments::EngineOptions options;
        options.threads = 1;
        options.seed = 1;
        options.gateway.seed = 1;
        options.log_output = nullptr;
        options.idempotency_max_records = 1000;
        engine = payments::Engine::create(options).value();
        api.emplace(*engine, readiness);
        readiness = http_server::Readiness::ready;
    }

    std::unique_ptr<payments::Engine> engine;
    std::atomic<http_server::Readiness> readiness{http_server::Readiness::starting};
    std::optional<http_server::Api> api;
    // Small limits, so that inputs of a few KiB reach them.
    http_server::Limits limits{.body = 2048, .header = 1024, .uri = 256};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    static Fixture fixture;
    std::string_view const input(reinterpret_cast<char const*>(data), size);
    std::string const output = http_server::serve_bytes(*fixture.api, input, fixture.limits);
    // Whatever came in, what goes out is HTTP: a request that is not only
    // empty lines gets an answer.
    auto const begins = input.find_first_not_of("\r\n");
    if (begins != std::string_view::npos && !output.starts_with("HTTP/1.")) std::abort();
    return 0;
}
