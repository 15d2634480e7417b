#pragma once

#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <boost/beast/http/verb.hpp>

#include <map>
#include <mutex>
#include <string_view>
#include <tuple>

namespace http_server {

/// The method as metrics and logs name it: "GET", or "unknown" if it was not read.
std::string_view method_label(boost::beast::http::verb method);

/// `http_requests_total{route,method,status}` and `http_request_duration_seconds{route}`.
/// Each (route, method, status) series is registered on first use and then found
/// in a map under a short lock, instead of the registry's lookup by name and
/// labels on every request. Routes are string literals: static storage.
class HttpMetrics {
public:
    explicit HttpMetrics(payments::infrastructure::MetricsRegistry& registry) : registry_(registry) {}

    void record(std::string_view route, boost::beast::http::verb method, unsigned status, double seconds);

private:
    struct Series {
        payments::infrastructure::Counter* requests;
        payments::infrastructure::Histogram* duration;
    };

    payments::infrastructure::MetricsRegistry& registry_;
    std::mutex mutex_;
    std::map<std::tuple<std::string_view, boost::beast::http::verb, unsigned>, Series> series_; // Owned by: mutex_
};

} // namespace http_server
