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
/// Options: body and header size, read timeout, connection count.
class Server {
public:
    Server(Options const& options, Api& api, payments::application::Logger& logger);
    /// Stops and joins if still running.
    ~Server();

    /// Binds, listens and starts the threads; returns the bound port.
    payments::Result<std::uint16_t> start();
    /// Stops accepting, closes idle connections, lets requests in flight
    /// finish (answering with Connection: close); false at the deadline.
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
