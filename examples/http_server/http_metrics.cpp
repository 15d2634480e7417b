#include "http_metrics.hpp"

#include <string>

namespace http_server {

std::string_view method_label(boost::beast::http::verb method) {
    // A request refused before its method was read has none.
    return method == boost::beast::http::verb::unknown ? std::string_view("unknown")
                                                       : std::string_view(boost::beast::http::to_string(method));
}

void HttpMetrics::record(std::string_view route, boost::beast::http::verb method, unsigned status, double seconds) {
    Series series{};
    {
        std::lock_guard lock(mutex_);
        auto [it, inserted] = series_.try_emplace({route, method, status});
        if (inserted) {
            std::string const method_name(method_label(method));
            it->second.requests = &registry_.counter("http_requests_total", "HTTP requests by route, method and status",
                                                     {{"route", std::string(route)},
                                                      {"method", method_name},
                                                      {"status", std::to_string(status)}});
            it->second.duration = &registry_.histogram("http_request_duration_seconds", "HTTP request latency by route",
                                                       payments::infrastructure::latency_buckets(),
                                                       {{"route", std::string(route)}});
        }
        series = it->second;
    }
    series.requests->inc();
    series.duration->observe(seconds);
}

} // namespace http_server
