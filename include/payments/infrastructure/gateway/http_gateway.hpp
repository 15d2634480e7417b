#pragma once

#include <payments/application/logger.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/error.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace payments::infrastructure {

class MetricsRegistry;

/// Where an HttpGateway sends its calls, and its limits.
struct HttpGatewayOptions {
    /// The provider's base URL: `http://host[:port][/prefix]` or `https://host[:port][/prefix]`.
    /// Requests go to `<prefix>/v1/payment_intents...` (docs/psp-protocol.md).
    std::string url;
    /// Sent as `Authorization: Bearer <secret_key>`. Never logged, never in an answer's reason.
    std::string secret_key;
    /// https: a PEM file of the certificate authorities to trust instead of the system roots.
    std::string ca_file;
    /// One call's deadline, from asking for a connection to the answer's last byte
    /// (name resolution excepted: use an address or a local resolver).
    std::chrono::milliseconds deadline{10'000};
    /// Idle keep-alive connections kept for reuse; more are closed after their call.
    std::size_t max_idle_connections = 16;
    /// Calls in flight at once. Past it a charge answers at once, nothing sent,
    /// ChargeAnswer::refused_over_limit (the processor holds the attempt until a call
    /// here ends; the circuit does not count it) and a look-up PENDING, so that a slow provider cannot take every socket of the process.
    std::size_t max_in_flight = 512;
    /// Where failures are reported (once per call, at warn); may be null. Must outlive the gateway.
    application::Logger* logger = nullptr;
    /// The gateway's name in log lines.
    std::string name = "psp";
};

/// Counters of an HttpGateway's connection pool, for tests and benchmarks.
struct HttpGatewayStats {
    std::size_t connections_opened = 0; ///< new connections (TCP, and TLS if https)
    std::size_t connections_reused = 0; ///< calls that took an idle keep-alive connection
    std::size_t stale_retries = 0;      ///< charges sent again after a pooled connection closed (see the docs)
};

/// A payment provider over HTTP/1.1 or HTTPS speaking the PaymentIntents subset
/// of docs/psp-protocol.md, with Boost.Beast: keep-alive pool, a deadline per
/// call, and the error table of that document (an answer is TRANSIENT only when
/// the provider provably did not act on the request; otherwise, without a
/// definitive answer, UNKNOWN_OUTCOME). Every call is answered exactly once, by
/// its deadline, on one of the executor's threads. Thread-safe; its I/O runs on
/// one strand of the executor (parsing and TLS of one gateway use one core at a time).
///
/// **Example**
/// ```cpp
/// auto gateway = HttpGateway::create(io.get_executor(),
///                                    {.url = "https://psp.example", .secret_key = key});
/// ```
class HttpGateway final : public application::PaymentGateway {
public:
    /// Checks the URL and, for https, loads the trusted roots; `invalid_argument` if either fails.
    static Result<std::shared_ptr<HttpGateway>> create(boost::asio::any_io_executor executor,
                                                       HttpGatewayOptions options);
    /// Calls in flight still answer (they hold what they need) by their deadline.
    ~HttpGateway() override;
    HttpGateway(HttpGateway const&) = delete;
    HttpGateway& operator=(HttpGateway const&) = delete;

    /// `POST /v1/payment_intents` with `confirm=true` and the request's key as `Idempotency-Key`.
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override;
    /// The search by `metadata['gateway_key']`; a failed search answers PENDING (ask again later).
    void lookup(std::string idempotency_key, std::function<void(application::ChargeStatus)> on_answer) override;

    HttpGatewayStats stats() const;

    /// Shows this gateway's calls in `registry` under the label gateway=`name`:
    /// `payment_gateway_http_calls_total{call,outcome}` (charge: charged,
    /// declined, transient, unknown_outcome, over_limit; lookup: charged,
    /// declined, pending, absent, failed, over_limit) and the histogram
    /// `payment_gateway_http_call_seconds{call}`, from the call to its answer.
    /// The counts live in the gateway, which may outlive the registry.
    void register_metrics(MetricsRegistry& registry, std::string const& name) const;

    struct Impl;

private:
    explicit HttpGateway(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
