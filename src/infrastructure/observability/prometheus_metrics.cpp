#include <payments/infrastructure/observability/prometheus_metrics.hpp>

#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/store/postgres_store.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>

#include <chrono>

namespace payments::infrastructure {

using domain::FailureKind;
using domain::InvoiceStatus;

PrometheusMetrics::PrometheusMetrics(MetricsRegistry& r)
    : registry_(r), requested_(r.counter("payments_requested_total", "Payment attempts requested by callers")),
      succeeded_(r.counter("payments_succeeded_total", "Payment attempts the gateway charged")),
      failed_{},
      retries_(r.counter("payment_retries_scheduled_total", "Retries scheduled after a retryable failure")),
      duplicates_(r.counter("payment_duplicate_deliveries_total",
                            "Redelivered or duplicated payment requests kept from the gateway")),
      verifications_(r.counter("payment_outcome_verifications_total",
                               "Gateway look-ups of attempts whose outcome was unknown")),
      late_answers_(r.counter("payment_gateway_late_answers_total",
                              "Gateway answers that arrived after the timeout, and were still used")),
      reviews_{}, janitor_{}, invoices_{},
      gateway_latency_(r.histogram("payment_gateway_latency_seconds", "Time from charge to gateway outcome",
                                   latency_buckets())) {
    for (auto kind : {FailureKind::declined, FailureKind::transient, FailureKind::unknown_outcome})
        failed_[static_cast<std::size_t>(kind)] = &r.counter("payments_failed_total", "Payment attempts that failed",
                                                             {{"kind", std::string(to_string(kind))}});
    using application::JanitorFinding;
    using application::ReviewCause;
    for (auto cause : {ReviewCause::unresolved, ReviewCause::amount_mismatch, ReviewCause::contradiction})
        reviews_[static_cast<std::size_t>(cause)] =
            &r.counter("invoices_review_required_total", "Invoices put before an operator (NEEDS_REVIEW), by cause",
                       {{"cause", std::string(to_string(cause))}});
    for (auto finding : {JanitorFinding::stalled_attempt, JanitorFinding::unverified})
        janitor_[static_cast<std::size_t>(finding)] =
            &r.counter("payment_janitor_redriven_total", "Attempts the janitor found undriven and drove again",
                       {{"finding", std::string(to_string(finding))}});
    for (auto status : domain::invoice_statuses)
        invoices_[static_cast<std::size_t>(status)] =
            &r.gauge("invoices", "Invoices by status", {{"status", std::string(to_string(status))}});
}

void PrometheusMetrics::payment_requested() { requested_.inc(); }
void PrometheusMetrics::payment_succeeded() { succeeded_.inc(); }
void PrometheusMetrics::payment_failed(FailureKind kind) { failed_[static_cast<std::size_t>(kind)]->inc(); }
void PrometheusMetrics::retry_scheduled() { retries_.inc(); }
void PrometheusMetrics::duplicate_delivery() { duplicates_.inc(); }
void PrometheusMetrics::outcome_verification() { verifications_.inc(); }
void PrometheusMetrics::late_answer() { late_answers_.inc(); }
void PrometheusMetrics::review_required(application::ReviewCause cause) {
    reviews_[static_cast<std::size_t>(cause)]->inc();
}
void PrometheusMetrics::janitor_redrove(application::JanitorFinding finding) {
    janitor_[static_cast<std::size_t>(finding)]->inc();
}

// Per gateway: the registry hands back the same series for the same labels.
void PrometheusMetrics::gateway_circuit(std::string_view gateway, application::CircuitState state) {
    registry_
        .gauge("payment_gateway_circuit_state", "A gateway's circuit: 0 closed, 1 open, 2 half-open",
               {{"gateway", std::string(gateway)}})
        .set(static_cast<double>(state));
}

void PrometheusMetrics::gateway_circuit_transition(std::string_view gateway, application::CircuitTransition transition) {
    registry_
        .counter("payment_gateway_circuit_transitions_total", "Changes of a gateway's circuit, by the state entered",
                 {{"gateway", std::string(gateway)}, {"to", std::string(to_string(transition.to))}})
        .inc();
    gateway_circuit(gateway, transition.to);
}

void PrometheusMetrics::charge_deferred(std::string_view gateway) {
    registry_
        .counter("payment_gateway_deferred_total", "Attempts held back for later because their gateway's circuit was open",
                 {{"gateway", std::string(gateway)}})
        .inc();
}

void PrometheusMetrics::invoice_status_changed(std::optional<InvoiceStatus> from, InvoiceStatus to) {
    if (from) invoices_[static_cast<std::size_t>(*from)]->add(-1);
    invoices_[static_cast<std::size_t>(to)]->add(1);
}

void PrometheusMetrics::gateway_latency(domain::Duration elapsed) {
    gateway_latency_.observe(std::chrono::duration<double>(elapsed).count());
}

void register_bus_metrics(MetricsRegistry& registry, AsioEventBus const& bus) {
    auto read = [&bus](std::uint64_t BusStats::*field) {
        return [&bus, field] { return static_cast<double>(bus.stats().*field); };
    };
    registry.counter_callback("bus_events_published_total", "Events accepted by the bus", {}, read(&BusStats::published));
    registry.counter_callback("bus_events_delivered_total", "Events handed to subscribers", {}, read(&BusStats::delivered));
    registry.counter_callback("bus_handler_failures_total", "Handler calls that threw", {},
                              read(&BusStats::handler_failures));
    registry.counter_callback("bus_dead_letters_total", "Events dead-lettered after failed redeliveries", {},
                              read(&BusStats::dead_lettered));
    registry.counter_callback("bus_events_filtered_total", "Events a delivery filter dropped (another process delivers them)",
                              {}, read(&BusStats::filtered));
    registry.counter_callback("bus_deliveries_held_back_total",
                              "Times a delivery filter held a lane back (the store unsure it still owns the event)", {},
                              read(&BusStats::held_back));
    registry.gauge_callback("bus_queue_depth", "Deliveries queued or running", {}, read(&BusStats::queue_depth));
    registry.gauge_callback("bus_scheduled_pending", "Scheduled events not yet due", {},
                            read(&BusStats::scheduled_pending));
}

void register_store_metrics(MetricsRegistry& registry, InMemoryStore const& store) {
    registry.gauge_callback("store_invoices", "Invoices held in memory (never dropped)", {},
                            [&store] { return static_cast<double>(store.invoice_count()); });
    registry.gauge_callback("store_payments", "Payment attempts held in memory (never dropped)", {},
                            [&store] { return static_cast<double>(store.payment_count()); });
}

void register_idempotency_metrics(MetricsRegistry& registry, InMemoryIdempotencyStore const& idempotency) {
    registry.gauge_callback("idempotency_records", "Idempotency records held", {},
                            [&idempotency] { return static_cast<double>(idempotency.size()); });
    registry.counter_callback("idempotency_evictions_total", "Idempotency records evicted at the cap", {},
                              [&idempotency] { return static_cast<double>(idempotency.evictions()); });
}

void register_store_metrics(MetricsRegistry& registry, SqliteStore const& store) {
    registry.gauge_callback("store_invoices", "Invoices in the database file", {},
                            [&store] { return static_cast<double>(store.invoice_count()); });
    registry.gauge_callback("store_payments", "Payment attempts in the database file", {},
                            [&store] { return static_cast<double>(store.payment_count()); });
    registry.counter_callback("store_transactions_total", "Transactions committed (each one fsync)", {},
                              [&store] { return static_cast<double>(store.transactions()); });
    registry.counter_callback("store_commands_total", "Commands committed, in those transactions", {},
                              [&store] { return static_cast<double>(store.commands()); });
    registry.counter_callback("store_errors_total", "Reads and writes the store's file refused", {},
                              [&store] { return static_cast<double>(store.storage_errors()); });
}

void register_store_metrics(MetricsRegistry& registry, PostgresStore const& store) {
    registry.counter_callback("store_transactions_total", "Transactions committed", {},
                              [&store] { return static_cast<double>(store.transactions()); });
    registry.counter_callback("store_commands_total", "Commands committed, in those transactions", {},
                              [&store] { return static_cast<double>(store.commands()); });
    registry.counter_callback("store_errors_total", "Reads and writes that PostgreSQL or the network failed", {},
                              [&store] { return static_cast<double>(store.storage_errors()); });
    registry.counter_callback("store_reregistrations_total",
                              "Times this process found its liveness lapsed (it stalled) and registered anew", {},
                              [&store] { return static_cast<double>(store.reregistrations()); });
}

} // namespace payments::infrastructure
