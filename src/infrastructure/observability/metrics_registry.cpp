#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <fmt/format.h>

#include <boost/assert.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <variant>

namespace payments::infrastructure {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
    BOOST_ASSERT(std::is_sorted(bounds_.begin(), bounds_.end()));
}

void Histogram::observe(double value) noexcept {
    auto const bucket = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
    counts_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
    Snapshot s;
    s.cumulative.reserve(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += counts_[i].load(std::memory_order_relaxed);
        s.cumulative.push_back(running);
    }
    s.count = running;
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
}

std::vector<double> latency_buckets() {
    return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

struct MetricsRegistry::Series {
    Labels labels;
    std::variant<std::monostate, Counter, Gauge, Histogram, std::function<double()>, std::shared_ptr<Histogram const>>
        value;
};

struct MetricsRegistry::Family {
    std::string help;
    std::string type;
    std::vector<std::unique_ptr<Series>> series;
};

namespace {

bool valid_name(std::string_view name) {
    auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; };
    return !name.empty() && head(name[0]) &&
           std::all_of(name.begin() + 1, name.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

void append_escaped(std::string& out, std::string_view text, bool quotes) {
    for (char c : text) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '"' && quotes) out += "\\\"";
        else out += c;
    }
}

void append_labels(std::string& out, Labels const& labels, std::string_view le = {}) {
    if (labels.empty() && le.empty()) return;
    out += '{';
    bool first = true;
    for (auto const& [key, value] : labels) {
        if (!first) out += ',';
        first = false;
        out += key;
        out += "=\"";
        append_escaped(out, value, true);
        out += '"';
    }
    if (!le.empty()) {
        if (!first) out += ',';
        out += "le=\"";
        out += le;
        out += '"';
    }
    out += '}';
}

std::string number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    return fmt::format("{}", v);
}

} // namespace

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Series& MetricsRegistry::series(std::string_view name, std::string_view help, std::string_view type,
                                                 Labels labels) {
    // Registration is rare and a bad name would corrupt the whole exposition:
    // checked in every build, and a bug, so it throws.
    if (!valid_name(name)) throw std::invalid_argument("invalid metric name: " + std::string(name));
    auto it = families_.find(name);
    if (it == families_.end()) it = families_.emplace(std::string(name), Family{std::string(help), std::string(type), {}}).first;
    Family& family = it->second;
    if (family.type != type)
        throw std::invalid_argument("metric " + std::string(name) + " is a " + family.type + ", not a " + std::string(type));
    for (auto& s : family.series)
        if (s->labels == labels) return *s;
    // Built in place: the metrics hold atomics and never move.
    auto& added = family.series.emplace_back(std::make_unique<Series>());
    added->labels = std::move(labels);
    return *added;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help, Labels labels) {
    std::lock_guard lock(mutex_);
    Series& s = series(name, help, "counter", std::move(labels));
    if (std::holds_alternative<std::monostate>(s.value)) s.value.emplace<Counter>();
    return std::get<Counter>(s.value);
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, Labels labels) {
    std::lock_guard lock(mutex_);
    Series& s = series(name, help, "gauge", std::move(labels));
    if (std::holds_alternative<std::monostate>(s.value)) s.value.emplace<Gauge>();
    return std::get<Gauge>(s.value);
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                                      Labels labels) {
    std::lock_guard lock(mutex_);
    Series& s = series(name, help, "histogram", std::move(labels));
    if (std::holds_alternative<std::monostate>(s.value)) s.value.emplace<Histogram>(std::move(bounds));
    return std::get<Histogram>(s.value);
}

void MetricsRegistry::counter_callback(std::string_view name, std::string_view help, Labels labels,
                                       std::function<double()> read) {
    std::lock_guard lock(mutex_);
    series(name, help, "counter", std::move(labels)).value = std::move(read);
}

void MetricsRegistry::gauge_callback(std::string_view name, std::string_view help, Labels labels,
                                     std::function<double()> read) {
    std::lock_guard lock(mutex_);
    series(name, help, "gauge", std::move(labels)).value = std::move(read);
}

void MetricsRegistry::histogram_callback(std::string_view name, std::string_view help, Labels labels,
                                         std::shared_ptr<Histogram const> histogram) {
    std::lock_guard lock(mutex_);
    series(name, help, "histogram", std::move(labels)).value = std::move(histogram);
}

std::string MetricsRegistry::render() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (auto const& entry : families_) {
        // Not a structured binding: clang 14 cannot capture one in the lambda below.
        std::string const& name = entry.first;
        auto const& family = entry.second;
        out += "# HELP " + name + ' ';
        append_escaped(out, family.help, false);
        out += "\n# TYPE " + name + ' ' + family.type + '\n';
        for (auto const& s : family.series) {
            auto line = [&](std::string_view suffix, std::string_view le, std::string const& value) {
                out += name;
                out += suffix;
                append_labels(out, s->labels, le);
                out += ' ' + value + '\n';
            };
            auto histogram = [&](Histogram const& v) {
                auto const snap = v.snapshot();
                for (std::size_t i = 0; i < v.bounds().size(); ++i)
                    line("_bucket", number(v.bounds()[i]), std::to_string(snap.cumulative[i]));
                line("_bucket", "+Inf", std::to_string(snap.count));
                line("_sum", {}, number(snap.sum));
                line("_count", {}, std::to_string(snap.count));
            };
            std::visit(
                [&](auto const& v) {
                    using V = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<V, Counter>) line("", {}, std::to_string(v.value()));
                    else if constexpr (std::is_same_v<V, Gauge>) line("", {}, number(v.value()));
                    else if constexpr (std::is_same_v<V, std::function<double()>>) line("", {}, number(v()));
                    else if constexpr (std::is_same_v<V, Histogram>) histogram(v);
                    else if constexpr (std::is_same_v<V, std::shared_ptr<Histogram const>>) histogram(*v);
                },
                s->value);
        }
    }
    return out;
}

} // namespace payments::infrastructure
