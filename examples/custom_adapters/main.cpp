// An application that brings its own adapters: a payment provider (a small
// fake of one), a logger writing plain lines to stdout and metrics of its own,
// wired through Engine::builder(). It pays an invoice, waits until it is
// settled and prints every event with the fmt formatters.
//
//     payments-custom-adapters [payment-method]   (default "card"; "declined_card" is refused)

#include <payments/engine.hpp>
#include <payments/fmt.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

using namespace payments;

namespace {

// A provider in the shape of a real one: it remembers each idempotency key's
// answer, so a repeated key never charges twice, and refuses one card. A real
// provider answers from its HTTP client's thread; this one answers at once.
class FakeProvider final : public application::PaymentGateway {
public:
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override {
        application::ChargeAnswer answer = [&] {
            std::lock_guard lock(mutex_);
            auto [it, first] = answers_.try_emplace(request.idempotency_key);
            if (first)
                it->second = request.payment_method == "declined_card"
                                 ? application::ChargeAnswer::failed(domain::FailureKind::declined, "card refused")
                                 : application::ChargeAnswer::success("fp_" + std::to_string(answers_.size()),
                                                                      request.amount);
            return it->second;
        }();
        on_answer(std::move(answer));
    }

    void lookup(std::string idempotency_key, std::function<void(application::ChargeStatus)> on_answer) override {
        application::ChargeStatus status = application::ChargeStatus::not_found();
        {
            std::lock_guard lock(mutex_);
            if (auto it = answers_.find(idempotency_key); it != answers_.end())
                status = it->second.succeeded() ? application::ChargeStatus::booked(it->second.reference,
                                                                                    *it->second.charged)
                                                : application::ChargeStatus::refused(it->second.failure->reason);
        }
        on_answer(std::move(status));
    }

private:
    std::mutex mutex_;
    std::unordered_map<std::string, application::ChargeAnswer> answers_; // Owned by: mutex_; by key
};

// Plain lines on stdout: "[info] payment requested invoice_id=inv_…".
class StdoutLogger final : public application::Logger {
public:
    bool enabled(application::LogLevel level) const noexcept override { return level >= application::LogLevel::info; }
    void write(application::LogLevel level, std::string_view message,
               std::span<application::LogField const> fields) override {
        static constexpr char const* names[] = {"debug", "info", "warn", "error"};
        std::string line = fmt::format("[{}] {}", names[static_cast<int>(level)], message);
        for (auto const& field : fields)
            std::visit([&](auto const& value) { line += fmt::format(" {}={}", field.key, value); }, field.value);
        std::lock_guard lock(mutex_); // whole lines, from any thread
        fmt::print("{}\n", line);
    }

private:
    std::mutex mutex_;
};

// The counts this application cares about; the rest is ignored.
class AppMetrics final : public application::Metrics {
public:
    std::atomic<int> requested{0}, succeeded{0}, failed{0}, retries{0};

    void payment_requested() override { ++requested; }
    void payment_succeeded() override { ++succeeded; }
    void payment_failed(domain::FailureKind) override { ++failed; }
    void retry_scheduled() override { ++retries; }
    void duplicate_delivery() override {}
    void invoice_status_changed(std::optional<domain::InvoiceStatus>, domain::InvoiceStatus) override {}
    void gateway_latency(domain::Duration) override {}
    void outcome_verification() override {}
    void late_answer() override {}
    void review_required(application::ReviewCause) override {}
    void janitor_redrove(application::JanitorFinding) override {}
};

} // namespace

int main(int argc, char** argv) {
    std::string const method = argc > 1 ? argv[1] : "card";
    auto metrics = std::make_shared<AppMetrics>();
    auto built = Engine::builder()
                     .threads(2)
                     .gateway("fakepay", std::make_shared<FakeProvider>())
                     .logger(std::make_shared<StdoutLogger>())
                     .metrics(metrics)
                     .build();
    if (!built) {
        fmt::print(stderr, "cannot start: {}\n", built.error().detail);
        return 1;
    }
    Engine& engine = **built;

    // Handlers run on the engine's threads, one event of an invoice at a time.
    auto printer = engine.bus().subscribe_all("printer", [](domain::Event const& event) {
        fmt::print("event: {}\n", event);
    });

    auto amount = domain::Money::positive(4200, domain::Currency::from_code("EUR").value()).value();
    auto invoice = engine.service().create_invoice({.amount = amount, .description = "Team plan"}).value();
    auto reply = engine.service().request_payment({.invoice_id = invoice.id(), .payment_method = method});
    if (!reply.result) {
        fmt::print(stderr, "payment refused: {}\n", reply.result.error().detail);
        return 1;
    }
    if (!engine.wait_settled(std::chrono::seconds(30))) {
        fmt::print(stderr, "not settled within 30 s\n");
        return 1;
    }

    auto const settled = engine.service().invoice(invoice.id()).value();
    fmt::print("invoice {} {} {} after {} attempt(s) through {}\n", settled.id(), settled.amount(), settled.status(),
               settled.current_attempt(), engine.gateways().front().name);
    fmt::print("metrics: requested={} succeeded={} failed={} retries={}\n", metrics->requested.load(),
               metrics->succeeded.load(), metrics->failed.load(), metrics->retries.load());
    printer.reset();
    engine.shutdown(std::chrono::seconds(5));
    return settled.status() == domain::InvoiceStatus::paid ? 0 : 2;
}
