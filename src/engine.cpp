#include <payments/engine.hpp>

#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/gateway/http_gateway.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/observability/prometheus_metrics.hpp>
#include <payments/application/outbox_relay.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/store/postgres_store.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace payments {

using namespace infrastructure;

namespace {

unsigned thread_count(EngineOptions const& o) {
    return o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
}

// As many delivery tasks as the pool has threads; on the application's
// io_context, as many as EngineOptions::threads says if it says.
BusOptions bus_options(EngineOptions const& o, bool own_pool) {
    BusOptions bus = o.bus;
    if (own_pool || o.threads != 0) bus.delivery_tasks = thread_count(o);
    return bus;
}

template <class T, class Make>
std::shared_ptr<T> or_default(std::shared_ptr<T> given, Make make) {
    return given ? std::move(given) : make();
}

// A fixed seed repeats its ids only where nothing outlives the run (the
// in-memory store): on a durable or shared store two runs, or two servers,
// with one seed would make the same ids, so entropy of this run is mixed in.
std::uint64_t id_seed(EngineOptions const& o, application::Store const* store) {
    if (o.seed == 0) return SeededRandom::entropy_seed();
    bool const in_memory = !store || dynamic_cast<InMemoryStore const*>(store) != nullptr;
    return in_memory ? o.seed : o.seed ^ SeededRandom::entropy_seed();
}

} // namespace

// Members in dependency order: each is built from those above it and
// destroyed before them.
struct Engine::Impl {
    explicit Impl(EngineBuilder& b)
        : options(b.options_),
          clock(or_default(std::move(b.clock_), [] { return std::make_shared<SystemClock>(); })),
          random(id_seed(options, b.store_.get())),
          logger(or_default(std::move(b.logger_), [&] {
              return std::make_shared<JsonLogger>(options.log_output, options.log_level, *clock,
                                                  options.log_flush_interval);
          })),
          metrics(or_default(std::move(b.metrics_), [&] { return std::make_shared<PrometheusMetrics>(registry); })),
          pool(b.io_ == nullptr ? std::make_optional<boost::asio::thread_pool>(thread_count(options)) : std::nullopt),
          executor(pool ? boost::asio::any_io_executor(pool->get_executor())
                        : boost::asio::any_io_executor(b.io_->get_executor())),
          scheduler(executor, *clock, *logger),
          bus(executor, scheduler, *clock, *logger, bus_options(options, pool.has_value())),
          store(std::move(b.store_)), idempotency(std::move(b.idempotency_)), named(std::move(b.gateways_)),
          gateways(application::Gateways::make(with_default_gateway(), options.breaker).value()),
          ports{*clock, random, default_store(), default_idempotency(), bus, scheduler, gateways, *metrics, *logger},
          service(ports) {
        register_bus_metrics(registry, bus);
        registry.counter_callback("scheduler_failed_calls_total", "Scheduled calls that threw (each logged)", {},
                                  [this] { return static_cast<double>(scheduler.failed_calls()); });
        if (auto* sqlite = dynamic_cast<SqliteStore*>(store.get())) register_store_metrics(registry, *sqlite);
        if (auto* postgres = dynamic_cast<PostgresStore*>(store.get())) register_store_metrics(registry, *postgres);
        for (auto const& gateway : named)
            if (auto* http = dynamic_cast<HttpGateway const*>(gateway.gateway.get()))
                http->register_metrics(registry, gateway.name);
    }

    application::Store& default_store() {
        if (!store) {
            auto memory = std::make_shared<InMemoryStore>();
            register_store_metrics(registry, *memory);
            store = std::move(memory);
        }
        return *store;
    }

    application::IdempotencyStore& default_idempotency() {
        if (!idempotency) {
            auto memory =
                std::make_shared<InMemoryIdempotencyStore>(options.idempotency_ttl, options.idempotency_max_records);
            register_idempotency_metrics(registry, *memory);
            idempotency = std::move(memory);
        }
        return *idempotency;
    }

    // The application's gateways, or the simulated one.
    std::vector<application::NamedGateway> with_default_gateway() {
        if (named.empty()) {
            auto gateway = std::make_shared<SimulatedGateway>(scheduler, *clock, options.gateway, options.gateway_ledger);
            simulated = gateway.get();
            named.push_back({"simulated", std::move(gateway)});
        }
        return named;
    }

    // Recovery: what an earlier run committed and did not finish. Events are
    // published again and retries re-armed; attempts left REQUESTED (due) or
    // UNKNOWN are re-driven on their own keys. When build() returns, all of
    // it has started.
    // Each part on its own: a failed read of the outbox does not hold the
    // attempts' recovery back (review 21, F6).
    void recover() {
        try {
            auto const restarted = relay->restart();
            recovery.republished = restarted.republished;
            recovery.rearmed = restarted.rearmed;
        } catch (application::StorageFailure const& failure) {
            // What was found is handed over; the relay's rounds read the rest once the store reads.
            logger->error("recovery could not read the store's outbox", {{"error", failure.what()}});
        }
        try {
            recovery.redriven = processor->recover();
        } catch (application::StorageFailure const& failure) {
            // What was found is started; the janitor finds the rest once the store reads.
            logger->error("recovery could not read the store's attempts", {{"error", failure.what()}});
        }
        if (recovery.republished + recovery.rearmed + recovery.redriven == 0) return;
        logger->warn("recovering work from an earlier run",
                     {{"republished", static_cast<std::int64_t>(recovery.republished)},
                      {"rearmed", static_cast<std::int64_t>(recovery.rearmed)},
                      {"redriven", static_cast<std::int64_t>(recovery.redriven)}});
    }

    // Wakes wait_settled() when an invoice leaves PROCESSING.
    void on_settling_event() {
        {
            std::lock_guard lock(settle_mutex);
            ++settle_generation;
        }
        settled_cv.notify_all();
    }

    EngineOptions options;
    std::shared_ptr<application::Clock const> clock;
    SeededRandom random;
    MetricsRegistry registry;
    std::shared_ptr<application::Logger> logger;
    std::shared_ptr<application::Metrics> metrics;
    std::optional<boost::asio::thread_pool> pool;
    boost::asio::any_io_executor executor;
    AsioScheduler scheduler;
    AsioEventBus bus;
    std::shared_ptr<application::Store> store;
    std::shared_ptr<application::IdempotencyStore> idempotency;
    std::vector<application::NamedGateway> named;
    SimulatedGateway* simulated = nullptr; // the default gateway, when it is in use
    application::Gateways gateways;        // `named`, each with its circuit breaker
    application::Ports ports;
    application::PaymentService service;
    std::shared_ptr<application::PaymentProcessor> processor;
    std::optional<application::OutboxRelay> relay; // subscribed last: marks what the others handled
    Engine::Recovery recovery;

    std::mutex settle_mutex;
    std::condition_variable settled_cv;
    std::uint64_t settle_generation = 0; // Owned by: settle_mutex; settling events seen
    std::vector<application::Subscription> settle_watch;

    std::atomic<bool> stopped{false}; // shutdown() from a signal thread and the destructor
};

EngineBuilder::EngineBuilder(EngineOptions options) : options_(std::move(options)) {}

EngineBuilder& EngineBuilder::options(EngineOptions options) {
    options_ = std::move(options);
    return *this;
}

EngineBuilder& EngineBuilder::threads(unsigned count) {
    options_.threads = count;
    io_ = nullptr;
    return *this;
}

EngineBuilder& EngineBuilder::run_on(boost::asio::io_context& io) {
    io_ = &io;
    return *this;
}

namespace {

// Records the first invalid argument; the setter's adapter is kept only if given.
template <class T>
void take(std::shared_ptr<T>& slot, std::shared_ptr<T> given, std::string& invalid, char const* what) {
    if (!given && invalid.empty()) invalid = std::string(what) + " must not be null";
    slot = std::move(given);
}

} // namespace

EngineBuilder& EngineBuilder::store(std::shared_ptr<application::Store> store) {
    take(store_, std::move(store), invalid_, "the store");
    return *this;
}

EngineBuilder& EngineBuilder::idempotency_store(std::shared_ptr<application::IdempotencyStore> store) {
    take(idempotency_, std::move(store), invalid_, "the idempotency store");
    return *this;
}

EngineBuilder& EngineBuilder::gateway(std::string name, std::shared_ptr<application::PaymentGateway> gateway) {
    bool const taken = std::any_of(gateways_.begin(), gateways_.end(),
                                   [&](application::NamedGateway const& g) { return g.name == name; });
    if (invalid_.empty()) {
        if (!domain::is_valid_id(name))
            invalid_ = "a gateway name must be 1-64 characters of A-Z a-z 0-9 _ -";
        else if (taken)
            invalid_ = "gateway '" + name + "' is given twice";
        else if (!gateway)
            invalid_ = "gateway '" + name + "' must not be null";
    }
    gateways_.push_back({std::move(name), std::move(gateway)});
    return *this;
}

EngineBuilder& EngineBuilder::logger(std::shared_ptr<application::Logger> logger) {
    take(logger_, std::move(logger), invalid_, "the logger");
    return *this;
}

EngineBuilder& EngineBuilder::metrics(std::shared_ptr<application::Metrics> metrics) {
    take(metrics_, std::move(metrics), invalid_, "the metrics");
    return *this;
}

EngineBuilder& EngineBuilder::clock(std::shared_ptr<application::Clock const> clock) {
    take(clock_, std::move(clock), invalid_, "the clock");
    return *this;
}

Result<std::unique_ptr<Engine>> EngineBuilder::build() {
    if (!invalid_.empty()) return reject(ErrorCode::invalid_argument, invalid_);
    if (auto valid = options_.processor.validate(); !valid) return valid.error();
    if (auto valid = options_.breaker.validate(); !valid) return valid.error();
    if (options_.takeover_poll_interval <= domain::Duration::zero())
        return reject(ErrorCode::invalid_argument, "takeover_poll_interval must be positive");
    auto impl = std::make_unique<Engine::Impl>(*this);
    auto processor = application::PaymentProcessor::start(impl->ports, impl->options.processor);
    if (!processor) return processor.error();
    impl->processor = std::move(*processor);
    Engine::Impl* watched = impl.get();
    auto settling = [watched](auto const&) { watched->on_settling_event(); };
    impl->settle_watch.push_back(impl->bus.subscribe<domain::InvoicePaid>("engine.settled", settling));
    impl->settle_watch.push_back(impl->bus.subscribe<domain::InvoiceFailed>("engine.settled", settling));
    impl->settle_watch.push_back(impl->bus.subscribe<domain::InvoiceNeedsReview>("engine.settled", settling));
    impl->relay.emplace(*impl->store, impl->bus);
    impl->recover();
    impl->relay->watch(impl->scheduler, *impl->clock, impl->options.takeover_poll_interval);
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

EngineBuilder Engine::builder(EngineOptions options) { return EngineBuilder(std::move(options)); }

Result<std::unique_ptr<Engine>> Engine::create(EngineOptions options) { return builder(std::move(options)).build(); }

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
    shutdown(std::chrono::seconds(5));
    // A gateway callback that is running holds the processor, which uses the
    // adapters below it: let it finish before they go.
    std::weak_ptr<application::PaymentProcessor> const processor = impl_->processor;
    impl_->processor.reset();
    while (!processor.expired()) std::this_thread::yield();
}

application::PaymentService& Engine::service() { return impl_->service; }
application::EventBus& Engine::bus() { return impl_->bus; }
AsioEventBus& Engine::asio_bus() { return impl_->bus; }
std::span<application::NamedGateway const> Engine::gateways() const { return impl_->named; }
std::vector<application::GatewayHealth> Engine::gateway_health() const {
    return impl_->gateways.health(impl_->clock->now());
}
SimulatedGateway* Engine::simulated_gateway() { return impl_->simulated; }
MetricsRegistry& Engine::metrics() { return impl_->registry; }
application::Logger& Engine::logger() { return *impl_->logger; }
application::Clock const& Engine::clock() { return *impl_->clock; }
application::PaymentProcessor& Engine::processor() { return *impl_->processor; }
Engine::Recovery const& Engine::recovery() const { return impl_->recovery; }

// After shutdown() began the relay may be going: nothing is recovered any more.
bool Engine::recovering() const { return !impl_->stopped.load() && impl_->relay && impl_->relay->republishing(); }

bool Engine::store_writable() const {
    auto const* sqlite = dynamic_cast<SqliteStore const*>(impl_->store.get());
    return !sqlite || !sqlite->sealing();
}

bool Engine::wait_idle(std::chrono::steady_clock::duration timeout) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    // A settling gateway call publishes onto the bus and a delivery may start
    // a gateway call, so idle means both at once. The processor is read first:
    // a settlement publishes before it releases its claim, and a delivery
    // claims before it leaves the queue, so "processor idle, then bus empty"
    // cannot miss work moving between the two.
    for (;;) {
        if (!impl_->bus.wait_idle(deadline) || !impl_->processor->wait_idle(deadline)) return false;
        if (impl_->processor->in_flight() == 0 && impl_->bus.stats().queue_depth == 0) return true;
    }
}

bool Engine::wait_settled(std::chrono::steady_clock::duration timeout) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::uint64_t seen = 0;
        {
            std::lock_guard lock(impl_->settle_mutex);
            seen = impl_->settle_generation;
        }
        // Read after the generation: an invoice that settles from here on
        // bumps it, so the wait below cannot miss it.
        if (impl_->processor->unsettled().in_progress() == 0) {
            // Settled; let subscribers see what is queued, then make sure a
            // handler did not start new work meanwhile.
            if (!wait_idle(deadline - std::chrono::steady_clock::now())) return false;
            if (impl_->processor->unsettled().in_progress() == 0) return true;
            continue;
        }
        std::unique_lock lock(impl_->settle_mutex);
        if (!impl_->settled_cv.wait_until(lock, deadline, [&] { return impl_->settle_generation != seen; }))
            return false;
    }
}

ShutdownReport Engine::shutdown(std::chrono::steady_clock::duration grace) {
    if (impl_->stopped.exchange(true)) return {};
    impl_->service.stop_accepting();
    // Nothing more is taken over from other processes: what this one holds is theirs once it is gone.
    impl_->relay->stop();
    // The commands accepted before are answered first (their commits publish
    // what the processor then drives), then the processor stays subscribed
    // through the rest of the grace period, so a retry that falls due
    // meanwhile is still charged.
    auto const deadline = std::chrono::steady_clock::now() + grace;
    if (!impl_->service.wait_commands(deadline))
        impl_->logger->warn("shutdown grace period ended with commands waiting for their commit",
                            {{"commands", static_cast<std::int64_t>(impl_->service.commands_in_flight())}});
    if (!wait_idle(deadline - std::chrono::steady_clock::now()))
        impl_->logger->warn("shutdown grace period ended with work in flight");
    ShutdownReport report;
    report.scheduled_dropped = impl_->bus.stop().size();
    impl_->processor->stop();
    report.unsettled = impl_->processor->unsettled();
    auto count = [](std::size_t n) { return static_cast<std::int64_t>(n); };
    if (report.scheduled_dropped != 0 || report.unsettled.total() != 0)
        impl_->logger->warn("unsettled work at shutdown", {{"scheduled_dropped", count(report.scheduled_dropped)},
                                                           {"at_gateway", count(report.unsettled.at_gateway)},
                                                           {"retry_due", count(report.unsettled.retry_due)},
                                                           {"unknown", count(report.unsettled.unknown)},
                                                           {"needs_review", count(report.unsettled.needs_review)}});
    impl_->scheduler.shutdown();
    if (impl_->pool) impl_->pool->join();
    impl_->relay.reset();
    return report;
}

} // namespace payments
