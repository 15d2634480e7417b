#include "simulation.hpp"

#include <payments/application/payment_processor.hpp>
#include <payments/application/payment_service.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/observability/prometheus_metrics.hpp>
#include <payments/infrastructure/observability/time_format.hpp>

#include <boost/asio/io_context.hpp>

#include <iostream>
#include <map>
#include <set>
#include <sstream>

namespace sim {

using namespace payments;
using namespace payments::domain;
using namespace payments::application;
using namespace payments::infrastructure;

namespace {

// Simulated time the system gets to settle once the faults stop.
constexpr Duration liveness_limit = std::chrono::hours(24);

double unit(Random& random) { return static_cast<double>(random.next_u64() >> 11) * 0x1.0p-53; }

Duration upto(Random& random, Duration d) {
    return Duration(static_cast<Duration::rep>(random.uniform(static_cast<std::uint64_t>(d.count()))));
}

// FNV-1a over the delivered events: equal traces, equal hashes.
struct TraceHash {
    std::uint64_t value = 1469598103934665603ULL;
    void add(std::string_view text) {
        for (char c : text) {
            value ^= static_cast<unsigned char>(c);
            value *= 1099511628211ULL;
        }
        value ^= 0xff; // field separator
        value *= 1099511628211ULL;
    }
};

std::shared_ptr<PaymentGateway> unowned(PaymentGateway& gateway) {
    return std::shared_ptr<PaymentGateway>(std::shared_ptr<PaymentGateway>(), &gateway);
}

// The library wired as in production, but on one thread and simulated time,
// with the faulty transport in front of the real bus.
struct System {
    System(std::uint64_t seed, Faults const& faults, Config const& config)
        : ids(seed), inner(io.get_executor(), scheduler, clock, logger),
          bus(inner, clock, faults.bus, seed * 0x2545f4914f6cdd1dULL + 1), gateway(scheduler, clock, faults.gateway),
          gateway_b(scheduler, clock, faults.gateway_b),
          gateways(Gateways::make({{"a", unowned(gateway)}, {"b", unowned(gateway_b)}}, faults.breaker).value()),
          metrics(registry), ports{clock, ids, store, idempotency, bus, scheduler, gateways, metrics, logger},
          service(ports),
          processor(PaymentProcessor::start(ports, {config.retry, config.gateway_timeout}).value()) {}

    boost::asio::io_context io;
    ManualClock clock;
    SeededRandom ids;
    NullLogger logger;
    ManualScheduler scheduler{clock};
    AsioEventBus inner;
    FaultyBus bus;
    InMemoryStore store;
    InMemoryIdempotencyStore idempotency;
    SimulatedGateway gateway;
    SimulatedGateway gateway_b;
    Gateways gateways;
    MetricsRegistry registry;
    PrometheusMetrics metrics;
    std::string instance_id;
    Ports ports;
    PaymentService service;
    std::shared_ptr<PaymentProcessor> processor;
};

// What the workload was told, kept by the auditor independently of the system.
struct Record {
    std::map<std::string, PaymentResult> first_outcome_by_key;
    std::set<PaymentId> cycle_starts; // attempts the workload's own requests created
    std::set<InvoiceId> requested;
    std::uint64_t accepted = 0;
};

std::string key_text(IdempotencyKey const& key) { return key.scope() + '\n' + key.key(); }

double metric(std::string const& text, std::string const& series) {
    auto pos = text.find("\n" + series + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + series.size() + 2));
}

class Auditor {
public:
    Auditor(System& system, Record& record, Config const& config, Outcome& outcome)
        : system_(system), record_(record), config_(config), outcome_(outcome) {}

    void violation(std::string what) {
        if (outcome_.violations.size() < 20)
            outcome_.violations.push_back("t=" + format_rfc3339(system_.clock.now()) + " " + std::move(what));
    }

    // Invariants that hold at every step, against the provider's own ledger.
    // Both providers' ledgers; each charge must be at the gateway its attempt records.
    std::vector<GatewayCharge> ledgers() {
        std::vector<GatewayCharge> all;
        for (auto const* gateway : {&system_.gateway, &system_.gateway_b}) {
            std::string_view const name = gateway == &system_.gateway ? "a" : "b";
            for (auto& charge : gateway->ledger()) {
                auto payment = system_.store.payment(charge.payment_id);
                if (!payment || payment->gateway() != name)
                    violation("a charge at gateway " + std::string(name) + " for attempt " +
                              std::string(charge.payment_id.str()) + " recorded at " +
                              (payment ? payment->gateway() : std::string("nothing")));
                all.push_back(std::move(charge));
            }
        }
        return all;
    }

    void step() {
        std::map<InvoiceId, std::vector<GatewayCharge>> charges;
        for (auto const& charge : ledgers()) {
            auto& of_invoice = charges[charge.invoice_id];
            of_invoice.push_back(charge);
            if (of_invoice.size() == 2) violation("invoice " + std::string(charge.invoice_id.str()) + " charged twice");
        }
        for (Invoice const& invoice : invoices()) {
            auto const& charged = charges[invoice.id()];
            if (invoice.status() == InvoiceStatus::paid) {
                if (charged.size() != 1)
                    violation("invoice " + std::string(invoice.id().str()) + " PAID with " +
                              std::to_string(charged.size()) + " charges at the gateway");
                else if (charged[0].amount != invoice.amount())
                    violation("invoice " + std::string(invoice.id().str()) + " PAID by a charge of " +
                              charged[0].amount.to_string() + ", owed " + invoice.amount().to_string());
            }
            check_attempts(invoice);
        }
    }

    // Invariants of the settled system.
    void final() {
        step();
        std::map<InvoiceId, int> charges;
        for (auto const& charge : ledgers()) ++charges[charge.invoice_id];
        std::map<InvoiceStatus, int> by_status;
        std::map<FailureKind, int> failed_by_kind;
        int succeeded = 0, retries = 0;
        for (Invoice const& invoice : invoices()) {
            ++by_status[invoice.status()];
            bool const settled_by_operator_or_paid =
                invoice.status() == InvoiceStatus::paid || invoice.status() == InvoiceStatus::needs_review;
            if (charges[invoice.id()] == 1 && !settled_by_operator_or_paid)
                violation("invoice " + std::string(invoice.id().str()) + " charged at the gateway but " +
                          std::string(to_string(invoice.status())));
            if (record_.requested.contains(invoice.id()) && invoice.status() != InvoiceStatus::paid &&
                invoice.status() != InvoiceStatus::failed && invoice.status() != InvoiceStatus::needs_review)
                violation("invoice " + std::string(invoice.id().str()) + " still " + std::string(to_string(invoice.status())) +
                          " after the faults stopped");
            for (Payment const& p : system_.store.payments_of(invoice.id())) {
                if (p.status() == PaymentStatus::succeeded) ++succeeded;
                if (p.failure()) ++failed_by_kind[p.failure()->kind];
                if (p.unknown_since()) ++failed_by_kind[FailureKind::unknown_outcome]; // counted when it became unknown
                if (!record_.cycle_starts.contains(p.id())) ++retries;
            }
        }
        if (system_.gateway.bookings_pending() + system_.gateway_b.bookings_pending() != 0)
            violation("late bookings still pending at the end");
        outcome_.paid = by_status[InvoiceStatus::paid];
        outcome_.failed = by_status[InvoiceStatus::failed];
        outcome_.needs_review = by_status[InvoiceStatus::needs_review];
        auto const text = system_.registry.render();
        auto expect = [&](std::string const& series, double audited) {
            double const counted = metric(text, series);
            if (counted != audited)
                violation("metric " + series + " is " + std::to_string(counted) + ", audited " + std::to_string(audited));
        };
        expect("payments_requested_total", static_cast<double>(record_.accepted));
        expect("payments_succeeded_total", succeeded);
        for (auto kind : {FailureKind::declined, FailureKind::transient, FailureKind::unknown_outcome})
            expect("payments_failed_total{kind=\"" + std::string(to_string(kind)) + "\"}", failed_by_kind[kind]);
        expect("payment_retries_scheduled_total", retries);
        // In one process nothing loses track of an unknown answer: the janitor
        // finding one would mean a verification chain broke off.
        expect("payment_janitor_redriven_total{finding=\"unverified\"}", 0);
        for (auto status : invoice_statuses)
            expect("invoices{status=\"" + std::string(to_string(status)) + "\"}", by_status[status]);
        if (auto next = system_.scheduler.next_due())
            violation("work still scheduled for " + format_rfc3339(*next) + " after the liveness phase");
        if (system_.processor->in_flight() != 0) violation("gateway calls still in flight at the end");
        if (!system_.inner.dead_letters().empty()) violation("dead letters left at the end");
        outcome_.gateway_faults.declined = static_cast<std::uint64_t>(failed_by_kind[FailureKind::declined]);
        outcome_.gateway_faults.transient = static_cast<std::uint64_t>(failed_by_kind[FailureKind::transient]);
        outcome_.gateway_faults.unknown_outcome = static_cast<std::uint64_t>(failed_by_kind[FailureKind::unknown_outcome]);
        outcome_.gateway_faults.late_answers = static_cast<std::uint64_t>(metric(text, "payment_gateway_late_answers_total"));
        outcome_.gateway_faults.lookups = static_cast<std::uint64_t>(metric(text, "payment_outcome_verifications_total"));
    }

private:
    std::vector<Invoice> invoices() const {
        return system_.store.invoices({.limit = InvoiceQuery::max_limit}).data;
    }

    // Cycles never exceed the policy's attempts; every backoff is within its bound.
    void check_attempts(Invoice const& invoice) {
        auto const attempts = system_.store.payments_of(invoice.id());
        int in_cycle = 0;
        for (std::size_t i = 0; i < attempts.size(); ++i) {
            Payment const& p = attempts[i];
            if (record_.cycle_starts.contains(p.id()) || i == 0) {
                in_cycle = 1;
                continue;
            }
            ++in_cycle;
            if (in_cycle > config_.retry.max_attempts)
                violation("invoice " + std::string(invoice.id().str()) + " made attempt " + std::to_string(in_cycle) +
                          " of a cycle; the policy allows " + std::to_string(config_.retry.max_attempts));
            Payment const& previous = attempts[i - 1];
            Duration const waited = p.not_before() - previous.updated_at();
            if (waited < Duration::zero() || waited > config_.retry.max_delay(in_cycle - 1))
                violation("attempt " + std::string(p.id().str()) + " waited " + std::to_string(waited.count()) + " us");
        }
    }

    System& system_;
    Record& record_;
    Config const& config_;
    Outcome& outcome_;
};

} // namespace

Faults Faults::draw(std::uint64_t seed) {
    SeededRandom random(seed ^ 0xfa017ULL);
    Faults f;
    f.bus.drop = 0.30 * unit(random);
    f.bus.duplicate = 0.50 * unit(random);
    f.bus.delay = 0.30 * unit(random);
    f.bus.handler_throw = 0.10 * unit(random);
    f.gateway.decline_rate = 0.15 * unit(random);
    f.gateway.transient_rate = 0.30 * unit(random);
    f.gateway.timeout_rate = 0.15 * unit(random);
    f.gateway.lost_response_rate = 0.15 * unit(random);
    f.gateway.late_answer_rate = 0.15 * unit(random);
    f.gateway.late_booking_rate = 0.10 * unit(random);
    f.gateway.mismatch_rate = 0.01 * unit(random); // rare: a provider's bug
    f.gateway.latency_max = upto(random, std::chrono::seconds(3));
    // Late answers, late bookings, search lag and processing all end within
    // the processor's settle window (5 min): the provider contract it relies on.
    f.gateway.late_answer_delay = std::chrono::seconds(1) + upto(random, std::chrono::seconds(60));
    f.gateway.booking_delay = std::chrono::seconds(1) + upto(random, std::chrono::seconds(90));
    f.gateway.search_lag = upto(random, std::chrono::seconds(60));
    f.gateway.processing_time = upto(random, std::chrono::seconds(60));
    f.gateway.seed = seed ^ 0x9a7e3a7ULL;
    // The second provider: its own profile, often healthier, sometimes not.
    f.gateway_b = f.gateway;
    f.gateway_b.transient_rate = 0.30 * unit(random) * unit(random);
    f.gateway_b.timeout_rate = 0.15 * unit(random) * unit(random);
    f.gateway_b.lost_response_rate = 0.15 * unit(random);
    f.gateway_b.seed = seed ^ 0x5eed0bULL;
    // Circuits that open on as few as 3 calls, and stay open 5-60 s.
    f.breaker.window = 10;
    f.breaker.minimum_calls = 3 + static_cast<std::size_t>(random.uniform(7));
    f.breaker.failure_ratio = 0.4 + 0.4 * unit(random);
    f.breaker.open_for = std::chrono::seconds(5) + upto(random, std::chrono::seconds(55));
    return f;
}

std::string replay_command(std::uint64_t seed) {
    return "out/build/release/tests/payments-sim --seed " + std::to_string(seed) + " --verbose";
}

Outcome run(std::uint64_t seed, Config const& config, bool verbose) {
    Faults const faults = Faults::draw(seed);
    System system(seed, faults, config);
    Record record;
    Outcome outcome;
    outcome.seed = seed;
    Auditor auditor(system, record, config, outcome);
    Timestamp const start = system.clock.now();

    TraceHash trace;
    std::vector<Subscription> recorders;
    for (std::size_t kind = 0; kind < event_kinds; ++kind)
        recorders.push_back(system.inner.subscribe_kind(kind, "trace", [&](Event const& e) {
            EventEnvelope const& env = envelope_of(e);
            ++outcome.deliveries;
            trace.add(event_name(e));
            trace.add(env.id.str());
            trace.add(env.payment_id.str());
            trace.add(std::to_string(env.occurred_at.time_since_epoch().count()));
            if (verbose)
                std::cout << format_rfc3339(system.clock.now()) << ' ' << event_name(e) << ' ' << env.invoice_id
                          << ' ' << env.payment_id << " #" << env.attempt << '\n';
        }));

    // The workload: invoices, their first requests, then repeats, reused keys and manual retries.
    SeededRandom workload(seed ^ 0x3c6ef372fe94f82bULL);
    std::vector<InvoiceId> ids;
    for (int i = 0; i < config.invoices; ++i) {
        auto amount = Money::positive(1 + static_cast<std::int64_t>(workload.uniform(99'999)), Currency::usd()).value();
        ids.push_back(system.service.create_invoice({.amount = amount}).value().id());
    }
    auto request = [&](std::size_t invoice, std::optional<IdempotencyKey> key) {
        RequestPayment const command{ids[invoice], "", key, {}};
        auto answer = system.service.request_payment(command);
        if (key) {
            std::string const k = key_text(*key);
            auto first = record.first_outcome_by_key.find(k);
            // Only answers that depend on the request alone are kept for replay.
            bool const replayable = answer.result || answer.result.error().code == ErrorCode::invalid_argument;
            bool const refused_key = !answer.result && (answer.result.error().code == ErrorCode::idempotency_key_reused ||
                                                        answer.result.error().code == ErrorCode::idempotency_key_in_use);
            if (refused_key) {
                // The key's first request stands; this one was not run.
            } else if (answer.replayed) {
                if (first == record.first_outcome_by_key.end()) auditor.violation("replay of a key never answered: " + k);
                else if (!(answer.result == first->second)) auditor.violation("replay differs from the first answer: " + k);
            } else if (first != record.first_outcome_by_key.end()) {
                auditor.violation("key answered twice: " + k);
            } else if (replayable) {
                record.first_outcome_by_key.emplace(k, answer.result);
            }
        }
        if (answer.result && !answer.replayed) {
            ++record.accepted;
            record.cycle_starts.insert(answer.result->id());
            record.requested.insert(ids[invoice]);
        }
    };
    auto key_for = [](std::size_t invoice, int n) {
        return IdempotencyKey::make("client", "k" + std::to_string(invoice) + "-" + std::to_string(n)).value();
    };
    for (std::size_t i = 0; i < ids.size(); ++i)
        system.scheduler.call_at(start + upto(workload, config.window / 2), [&, i] { request(i, key_for(i, 0)); });
    for (int j = 0; j < config.extra_requests; ++j) {
        auto const invoice = static_cast<std::size_t>(workload.uniform(ids.size() - 1));
        auto const other = static_cast<std::size_t>(workload.uniform(ids.size() - 1));
        double const kind = unit(workload);
        std::optional<IdempotencyKey> key;
        if (kind < 0.4) key = key_for(invoice, 0);          // a repeat: replayed
        else if (kind < 0.7) key = key_for(invoice, j + 1); // a new request: manual retry, or refused by state
        else if (kind < 0.85) key = key_for(other, 0);      // another request's key: refused as reused
        system.scheduler.call_at(start + upto(workload, config.window), [&, invoice, key] { request(invoice, key); });
    }

    auto settle = [&] {
        for (;;) {
            std::size_t const n = system.io.poll() + system.scheduler.run_due();
            system.io.restart();
            if (n == 0) return;
            outcome.steps += n;
        }
    };
    auto advance = [&](Timestamp limit) {
        settle();
        auditor.step();
        auto next = system.scheduler.next_due();
        if (!next || *next > limit) return false;
        system.clock.advance_to(*next);
        return true;
    };

    while (advance(start + config.window)) {
    }
    // Liveness: the transport and the gateway behave; the operator replays dead letters.
    system.bus.stop_faults();
    system.gateway.set_options({.latency_max = faults.gateway.latency_max, .seed = faults.gateway.seed});
    system.gateway_b.set_options({.latency_max = faults.gateway_b.latency_max, .seed = faults.gateway_b.seed});
    // Bookings already late still happen: the provider keeps what it accepted.
    Timestamp const live_end = system.clock.now() + liveness_limit;
    for (int round = 0; round < 10; ++round) { // a few rounds: a replay may fail and dead-letter again
        while (advance(live_end)) {
        }
        if (system.inner.dead_letters().empty()) break;
        outcome.dead_letters_replayed += system.inner.replay_dead_letters();
    }
    auditor.final();

    outcome.trace_hash = trace.value;
    outcome.bus_faults = system.bus.counts();
    for (auto const& charge : auditor.ledgers()) {
        for (Payment const& p : system.store.payments_of(charge.invoice_id))
            if (p.gateway_key() == charge.idempotency_key && p.unknown_since()) {
                ++outcome.gateway_faults.lost_responses;
                break;
            }
        auto invoice = system.store.invoice(charge.invoice_id);
        if (invoice && invoice->amount() != charge.amount) ++outcome.gateway_faults.mismatches;
    }
    outcome.gateway_faults.late_bookings = system.gateway.late_bookings() + system.gateway_b.late_bookings();
    outcome.charged_at_b = system.gateway_b.ledger().size();
    auto const text = system.registry.render();
    for (std::string const name : {"a", "b"})
        outcome.circuits_opened += static_cast<std::uint64_t>(std::max(
            0.0, metric(text, "payment_gateway_circuit_transitions_total{gateway=\"" + name + "\",to=\"open\"}")));
    outcome.simulated = system.clock.now() - start;
    system.processor->stop();
    system.bus.stop_faults();
    return outcome;
}

} // namespace sim
