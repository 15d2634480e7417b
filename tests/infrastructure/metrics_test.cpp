#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <stdexcept>
#include <vector>

using payments::infrastructure::MetricsRegistry;

TEST_CASE("counters and gauges render in the Prometheus text format, families sorted") {
    MetricsRegistry registry;
    registry.counter("zeta_total", "Last family").inc(3);
    auto& ok = registry.counter("http_requests_total", "Requests", {{"route", "/invoices"}, {"status", "200"}});
    ok.inc();
    ok.inc(2);
    CHECK(&registry.counter("http_requests_total", "Requests", {{"route", "/invoices"}, {"status", "200"}}) == &ok);
    registry.gauge("queue_depth", "Depth").set(2.5);
    registry.gauge_callback("answer", "Read at render", {}, [] { return 42.0; });
    CHECK(registry.render() ==
          "# HELP answer Read at render\n# TYPE answer gauge\nanswer 42\n"
          "# HELP http_requests_total Requests\n# TYPE http_requests_total counter\n"
          "http_requests_total{route=\"/invoices\",status=\"200\"} 3\n"
          "# HELP queue_depth Depth\n# TYPE queue_depth gauge\nqueue_depth 2.5\n"
          "# HELP zeta_total Last family\n# TYPE zeta_total counter\nzeta_total 3\n");
}

TEST_CASE("label values and help text are escaped") {
    MetricsRegistry registry;
    registry.counter("c_total", "multi\nline \\ help", {{"path", "a\"b\\c\nd"}}).inc();
    CHECK(registry.render() ==
          "# HELP c_total multi\\nline \\\\ help\n# TYPE c_total counter\nc_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST_CASE("histograms count cumulatively, bounds inclusive") {
    MetricsRegistry registry;
    auto& h = registry.histogram("latency_seconds", "Latency", {0.1, 1});
    for (double v : {0.05, 0.1, 0.5, 3.0}) h.observe(v);
    CHECK(registry.render() ==
          "# HELP latency_seconds Latency\n# TYPE latency_seconds histogram\n"
          "latency_seconds_bucket{le=\"0.1\"} 2\nlatency_seconds_bucket{le=\"1\"} 3\n"
          "latency_seconds_bucket{le=\"+Inf\"} 4\nlatency_seconds_sum 3.65\nlatency_seconds_count 4\n");
}

TEST_CASE("a histogram owned elsewhere renders its counts at render time, and outlives the registry") {
    auto h = std::make_shared<payments::infrastructure::Histogram>(std::vector<double>{1});
    {
        MetricsRegistry registry;
        registry.histogram_callback("call_seconds", "Calls", {{"call", "charge"}}, h);
        h->observe(0.5);
        h->observe(2);
        CHECK(registry.render() ==
              "# HELP call_seconds Calls\n# TYPE call_seconds histogram\n"
              "call_seconds_bucket{call=\"charge\",le=\"1\"} 1\ncall_seconds_bucket{call=\"charge\",le=\"+Inf\"} 2\n"
              "call_seconds_sum{call=\"charge\"} 2.5\ncall_seconds_count{call=\"charge\"} 2\n");
    }
    h->observe(1); // its owner goes on counting after the registry is gone
    CHECK(h->snapshot().count == 3);
}

TEST_CASE("registering a malformed name, or one name with two types, is a bug and throws") {
    MetricsRegistry registry;
    CHECK_THROWS_AS(registry.counter("9lives", "bad"), std::invalid_argument);
    CHECK_THROWS_AS(registry.counter("has space", "bad"), std::invalid_argument);
    registry.counter("requests_total", "ok");
    CHECK_THROWS_AS(registry.gauge("requests_total", "clash"), std::invalid_argument);
}
