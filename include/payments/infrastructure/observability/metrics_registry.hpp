#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace payments::infrastructure {

/// A series' labels, name and value, in the order they are rendered.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing count.
class Counter {
public:
    void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down.
class Gauge {
public:
    void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
    void add(double d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
    double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

/// Observations counted into fixed buckets (upper bounds, ascending).
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);

    void observe(double value) noexcept;

    /// The histogram's counts at one moment.
    struct Snapshot {
        std::vector<std::uint64_t> cumulative; ///< one per bound, then +Inf
        double sum = 0;
        std::uint64_t count = 0;
    };
    Snapshot snapshot() const;
    std::vector<double> const& bounds() const noexcept { return bounds_; }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_; // per bucket, +Inf last
    std::atomic<double> sum_{0.0};
};

/// Latency buckets in seconds, from 100 µs to 10 s.
std::vector<double> latency_buckets();

/// Named metric families, rendered in the Prometheus text exposition format
/// 0.0.4. Registration locks; updating a registered metric is one atomic.
class MetricsRegistry {
public:
    MetricsRegistry();
    ~MetricsRegistry();

    /// The same name and labels return the same metric.
    Counter& counter(std::string_view name, std::string_view help, Labels labels = {});
    Gauge& gauge(std::string_view name, std::string_view help, Labels labels = {});
    Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                         Labels labels = {});
    /// A counter or gauge whose value is read at render time.
    void counter_callback(std::string_view name, std::string_view help, Labels labels, std::function<double()> read);
    void gauge_callback(std::string_view name, std::string_view help, Labels labels, std::function<double()> read);
    /// A histogram owned elsewhere (an adapter that may outlive the registry),
    /// rendered from its snapshot at render time.
    void histogram_callback(std::string_view name, std::string_view help, Labels labels,
                            std::shared_ptr<Histogram const> histogram);

    /// Everything, families sorted by name.
    std::string render() const;

private:
    struct Series;
    struct Family;
    Series& series(std::string_view name, std::string_view help, std::string_view type, Labels labels);

    mutable std::mutex mutex_;
    std::map<std::string, Family, std::less<>> families_; // Owned by: mutex_
};

} // namespace payments::infrastructure
