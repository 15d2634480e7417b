#pragma once

#include <payments/application/metrics.hpp>
#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <array>

namespace payments::infrastructure {

class AsioEventBus;
class InMemoryIdempotencyStore;
class InMemoryStore;
class SqliteStore;
class PostgresStore;

/// The use cases' metrics as Prometheus families in a registry:
/// payments_requested_total, payments_succeeded_total,
/// payments_failed_total{kind}, payment_retries_scheduled_total,
/// payment_duplicate_deliveries_total, payment_outcome_verifications_total,
/// payment_gateway_late_answers_total, invoices_review_required_total{cause},
/// payment_janitor_redriven_total{finding}, invoices{status},
/// payment_gateway_latency_seconds, payment_gateway_circuit_state{gateway}
/// (0 closed, 1 open, 2 half-open),
/// payment_gateway_circuit_transitions_total{gateway,to} and
/// payment_gateway_deferred_total{gateway}.
class PrometheusMetrics final : public application::Metrics {
public:
    explicit PrometheusMetrics(MetricsRegistry& registry);

    void payment_requested() override;
    void payment_succeeded() override;
    void payment_failed(domain::FailureKind kind) override;
    void retry_scheduled() override;
    void duplicate_delivery() override;
    void invoice_status_changed(std::optional<domain::InvoiceStatus> from, domain::InvoiceStatus to) override;
    void gateway_latency(domain::Duration elapsed) override;
    void outcome_verification() override;
    void late_answer() override;
    void review_required(application::ReviewCause cause) override;
    void janitor_redrove(application::JanitorFinding finding) override;
    void gateway_circuit(std::string_view gateway, application::CircuitState state) override;
    void gateway_circuit_transition(std::string_view gateway, application::CircuitTransition transition) override;
    void charge_deferred(std::string_view gateway) override;

private:
    MetricsRegistry& registry_;
    Counter& requested_;
    Counter& succeeded_;
    std::array<Counter*, 3> failed_;  // by FailureKind
    Counter& retries_;
    Counter& duplicates_;
    Counter& verifications_;
    Counter& late_answers_;
    std::array<Counter*, 3> reviews_; // by ReviewCause
    std::array<Counter*, 2> janitor_; // by JanitorFinding
    std::array<Gauge*, std::size(domain::invoice_statuses)> invoices_; // by InvoiceStatus
    Histogram& gateway_latency_;
};

/// Exposes the bus's counters: bus_events_published_total,
/// bus_events_delivered_total, bus_handler_failures_total,
/// bus_dead_letters_total, bus_queue_depth, bus_scheduled_pending.
void register_bus_metrics(MetricsRegistry& registry, AsioEventBus const& bus);

/// Exposes what the in-memory store holds: store_invoices, store_payments.
void register_store_metrics(MetricsRegistry& registry, InMemoryStore const& store);

/// Exposes the in-memory idempotency store: idempotency_records and
/// idempotency_evictions_total.
void register_idempotency_metrics(MetricsRegistry& registry, InMemoryIdempotencyStore const& idempotency);

/// Exposes what the SQLite store holds and does: store_invoices,
/// store_payments, store_transactions_total, store_commands_total (their
/// ratio is the group commit's batch size) and store_errors_total.
void register_store_metrics(MetricsRegistry& registry, SqliteStore const& store);

/// Exposes what the PostgreSQL store does in this process:
/// store_transactions_total, store_commands_total and store_errors_total.
void register_store_metrics(MetricsRegistry& registry, PostgresStore const& store);

} // namespace payments::infrastructure
