#pragma once

#include "options.hpp"

#include <payments/application/logger.hpp>
#include <payments/engine.hpp>

#include <memory>

namespace http_server {

/// The providers of `--gateway URL` (HttpGateway each, in preference order) and
/// the threads their calls run on. Destroy it after the engine has shut down.
class Gateways {
public:
    /// One HttpGateway per URL, named "gateway-1", "gateway-2"...; `invalid_argument`
    /// for a bad URL or CA file. Empty (the simulated default) without URLs.
    static payments::Result<std::unique_ptr<Gateways>> create(Options const& options,
                                                              payments::application::Logger& logger);
    ~Gateways();

    /// Gives the builder every gateway, in preference order (each gets a
    /// circuit breaker; a new attempt goes to the first usable one).
    void add_to(payments::EngineBuilder& builder) const;

    struct Impl;

private:
    explicit Gateways(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// The engine the options describe, on their store (memory, or the one
/// open_store() opened): with the simulated gateway, or with the
/// providers of `--gateway` (created into `gateways`, which must outlive the
/// engine), logging to the same JSON logger.
payments::Result<std::unique_ptr<payments::Engine>> build_engine(Options const& options,
                                                                 std::unique_ptr<Gateways>& gateways);

} // namespace http_server
