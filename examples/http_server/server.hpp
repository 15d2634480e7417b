#pragma once

#include "api.hpp"
#include "options.hpp"

#include <chrono>
#include <cstdint>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace http_server {

/// Accepts connections and serves each on its own strand, with the limits of
/// Options: body, header and URI size, idle and read timeouts, connection count
/// (at the limit the longest idle connection makes room; past it, overload
/// connections answer probes and refuse the rest with 503).
class Server {
public:
    Server(Options const& options, Api& api, payments::application::Logger& logger);
    /// Stops and joins if still running.
    ~Server();

    /// Binds, listens and starts the threads; returns the bound port.
    payments::Result<std::uint16_t> start();
    /// Stops accepting, closes idle connections at once, gives a half-sent
    /// request drain_read_timeout, lets requests in flight finish (answering
    /// with Connection: close); true as soon as none is left, false at the deadline.
    bool drain(std::chrono::steady_clock::time_point deadline);
    /// Stops the threads.
    void stop();

    struct Impl;

private:
    // Destroyed after impl_: destroying it destroys the handlers still queued,
    // which hold the last references to the sessions and to impl_.
    std::unique_ptr<boost::asio::io_context> io_;
    std::shared_ptr<Impl> impl_;
};

} // namespace http_server
