#pragma once

#include "routes.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace psp {

/// Where and how the provider listens.
struct ServerOptions {
    std::string bind = "127.0.0.1";
    std::uint16_t port = 0; ///< 0: an ephemeral port (see PspServer::start)
    std::string tls_cert;   ///< PEM certificate chain; with tls_key, the server speaks HTTPS only
    std::string tls_key;
    int threads = 1;
};

/// Serves a Provider over HTTP/1.1 (keep-alive) or HTTPS with Beast, on its own
/// threads. Connections it resets or holds are part of the provider's faults.
class PspServer {
public:
    PspServer(ServerOptions options, Provider &provider);
    /// Stops and joins if still running; connections in flight are dropped.
    ~PspServer();
    PspServer(PspServer const &) = delete;
    PspServer &operator=(PspServer const &) = delete;

    /// Binds, listens and starts the threads; returns the bound port. Throws on failure.
    std::uint16_t start();
    /// Stops the threads and closes every connection.
    void stop();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace psp
