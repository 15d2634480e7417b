#include <payments/infrastructure/gateway/simulated_gateway.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace payments::infrastructure {

using application::ChargeAnswer;
using application::ChargeRequest;
using domain::FailureKind;

namespace {

constexpr std::string_view flaky_prefix = "pm_card_flaky_";

// A uniform draw in [0, 1) from 53 random bits.
double unit(domain::Random& random) { return static_cast<double>(random.next_u64() >> 11) * 0x1.0p-53; }

} // namespace

namespace {

// One charge per line: key, invoice, payment, minor units, currency, reference, booked at (ticks).
std::string ledger_line(GatewayCharge const& c) {
    std::ostringstream line;
    line << c.idempotency_key << '\t' << c.invoice_id.str() << '\t' << c.payment_id.str() << '\t'
         << c.amount.minor_units() << '\t' << c.amount.currency().code() << '\t' << c.reference << '\t'
         << c.booked_at.time_since_epoch().count() << '\n';
    return line.str();
}

// The `count` tab-separated fields of `line`; nullopt when it holds another number.
template <std::size_t count>
std::optional<std::array<std::string_view, count>> split_fields(std::string_view line) {
    std::array<std::string_view, count> fields;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t const tab = line.find('\t');
        if ((tab == std::string_view::npos) != (i + 1 == count)) return std::nullopt;
        fields[i] = line.substr(0, tab);
        if (tab != std::string_view::npos) line.remove_prefix(tab + 1);
    }
    return fields;
}

// `text` as a whole integer; nullopt when it is anything else.
template <class Int>
std::optional<Int> whole_number(std::string_view text) {
    Int value{};
    auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// What a ledger file holds: its charges, and how many of its bytes are whole
// lines (a line cut short by a crash was never fsynced, so its charge was
// never answered: it is ignored, and cut off before the next line is added).
struct Ledger {
    std::vector<GatewayCharge> charges;
    std::streamoff whole_lines = 0;
};

// Read with string_views and from_chars: the crash loop's ledgers hold 100,000 lines.
Ledger read_ledger(std::string const& path) {
    Ledger ledger;
    std::vector<GatewayCharge>& charges = ledger.charges;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (in.eof()) break; // no newline: cut short
        ledger.whole_lines += static_cast<std::streamoff>(line.size()) + 1;
        auto const f = split_fields<7>(line);
        if (!f) continue;
        auto const& [key, invoice, payment, minor_text, currency, reference, booked_text] = *f;
        auto const minor = whole_number<std::int64_t>(minor_text);
        auto const booked = whole_number<domain::Duration::rep>(booked_text);
        auto invoice_id = domain::InvoiceId::parse(invoice);
        auto payment_id = domain::PaymentId::parse(payment);
        auto code = domain::Currency::from_code(currency);
        if (!minor || !booked || !invoice_id || !payment_id || !code) continue;
        auto amount = domain::Money::of(*minor, *code);
        if (!amount) continue;
        charges.push_back({std::string(key), *invoice_id, *payment_id, *amount, std::string(reference),
                           domain::Timestamp(domain::Duration(*booked))});
    }
    return ledger;
}

} // namespace

SimulatedGateway::SimulatedGateway(application::Scheduler& scheduler, application::Clock const& clock,
                                   SimulatedGatewayOptions options, std::string const& ledger_path)
    : scheduler_(scheduler), clock_(clock), options_(options), random_(options.seed), ledger_path_(ledger_path) {
    if (ledger_path_.empty()) return;
    Ledger stored = read_ledger(ledger_path_);
    answered_.reserve(stored.charges.size());
    ledger_.reserve(stored.charges.size());
    for (GatewayCharge& charge : stored.charges) {
        auto outcome = ChargeAnswer::success(charge.reference, charge.amount);
        answered_.emplace(charge.idempotency_key, Record{outcome, charge.booked_at, charge.booked_at});
        ledger_.push_back(std::move(charge));
    }
    ledger_fd_ = ::open(ledger_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (ledger_fd_ < 0) throw std::runtime_error("cannot open the gateway ledger " + ledger_path_);
    struct stat file{};
    if (::fstat(ledger_fd_, &file) == 0 && file.st_size > stored.whole_lines && ::ftruncate(ledger_fd_, stored.whole_lines) != 0)
        throw std::runtime_error("cannot cut the gateway ledger's last line short " + ledger_path_);
}

SimulatedGateway::~SimulatedGateway() {
    if (ledger_fd_ >= 0) ::close(ledger_fd_);
}

ChargeAnswer SimulatedGateway::remember_locked(ChargeRequest const& request, ChargeAnswer outcome) {
    domain::Timestamp const now = clock_.now();
    answered_.emplace(request.idempotency_key, Record{outcome, now, now});
    return outcome;
}

ChargeAnswer SimulatedGateway::book_locked(ChargeRequest const& request, domain::Money amount,
                                            domain::Duration processing) {
    domain::Timestamp const now = clock_.now();
    std::string reference = "ch_" + std::to_string(ledger_.size() + 1) + "_" + request.idempotency_key;
    ledger_.push_back({request.idempotency_key, request.invoice_id, request.payment_id, amount, reference, now});
    if (ledger_fd_ >= 0) {
        // Durable before it is answered: a provider does not forget a charge.
        std::string const line = ledger_line(ledger_.back());
        if (::write(ledger_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fdatasync(ledger_fd_) != 0)
            throw std::runtime_error("cannot write the gateway ledger " + ledger_path_);
    }
    auto outcome = ChargeAnswer::success(std::move(reference), amount);
    domain::Timestamp const visible = now + options_.search_lag;
    answered_.emplace(request.idempotency_key, Record{outcome, visible, visible + processing});
    return outcome;
}

void SimulatedGateway::book_later_locked(ChargeRequest const& request, domain::Duration delay) {
    ++bookings_pending_;
    scheduler_.call_at(clock_.now() + delay, [this, request] {
        std::lock_guard lock(mutex_);
        --bookings_pending_;
        if (answered_.contains(request.idempotency_key)) return;
        ++late_bookings_;
        book_locked(request, request.amount, options_.processing_time);
    });
}

SimulatedGateway::Decision SimulatedGateway::decide_locked(ChargeRequest const& request) {
    std::string_view const method = request.payment_method;
    domain::Money const asked = request.amount;
    domain::Duration const processing = options_.processing_time;
    // Answers worth remembering per key: a charge and a decline are final at a real PSP.
    auto declined = [&](std::string reason) {
        return Decision{remember_locked(request, ChargeAnswer::failed(FailureKind::declined, std::move(reason)))};
    };
    auto mismatched = [&] { return domain::Money::of(asked.minor_units() + 1, asked.currency()).value(); };
    if (method == "pm_card_ok") return {book_locked(request, asked, processing)};
    if (method == "pm_card_declined") return declined("card declined");
    if (method == "pm_card_unavailable") return {ChargeAnswer::failed(FailureKind::transient, "issuer unavailable")};
    if (method == "pm_card_timeout") return {};
    if (method == "pm_card_lost_response") {
        book_locked(request, asked, processing);
        return {}; // charged, but this answer never arrives
    }
    if (method == "pm_card_late_answer") return {book_locked(request, asked, processing), options_.late_answer_delay};
    if (method == "pm_card_late_booking") {
        book_later_locked(request, options_.booking_delay);
        return {};
    }
    if (method == "pm_card_processing") {
        book_locked(request, asked, std::max(processing, domain::Duration(std::chrono::seconds(60))));
        return {};
    }
    if (method == "pm_card_amount_mismatch") return {book_locked(request, mismatched(), processing)};
    if (method.starts_with(flaky_prefix) && method.size() == flaky_prefix.size() + 1 &&
        method.back() >= '1' && method.back() <= '9') {
        int const failures = method.back() - '0';
        if (transient_failures_[request.invoice_id]++ < failures)
            return {ChargeAnswer::failed(FailureKind::transient, "issuer temporarily unavailable")};
        return {book_locked(request, asked, processing)};
    }
    if (method.empty() || method == "pm_card_random") {
        // One draw against the cumulative rates:
        // decline | transient | timeout | lost answer | late answer | late booking | mismatch | charged.
        double threshold = unit(random_);
        if ((threshold -= options_.decline_rate) < 0) return declined("card declined");
        if ((threshold -= options_.transient_rate) < 0)
            return {ChargeAnswer::failed(FailureKind::transient, "issuer temporarily unavailable")};
        if ((threshold -= options_.timeout_rate) < 0) return {};
        if ((threshold -= options_.lost_response_rate) < 0) {
            book_locked(request, asked, processing);
            return {};
        }
        if ((threshold -= options_.late_answer_rate) < 0)
            return {book_locked(request, asked, processing), options_.late_answer_delay};
        if ((threshold -= options_.late_booking_rate) < 0) {
            auto const spread = static_cast<std::uint64_t>(options_.booking_delay.count());
            book_later_locked(request, domain::Duration(static_cast<domain::Duration::rep>(random_.uniform(spread))));
            return {};
        }
        if ((threshold -= options_.mismatch_rate) < 0) return {book_locked(request, mismatched(), processing)};
        return {book_locked(request, asked, processing)};
    }
    return declined("unknown payment method");
}

void SimulatedGateway::charge(ChargeRequest request, std::function<void(ChargeAnswer)> on_answer) {
    Decision decision;
    domain::Duration latency{0};
    {
        std::lock_guard lock(mutex_);
        keys_seen_.push_back(request.idempotency_key);
        if (auto it = answered_.find(request.idempotency_key); it != answered_.end())
            decision.answer = it->second.outcome;
        else
            decision = decide_locked(request);
        latency = latency_locked() + decision.extra_delay;
    }
    if (!decision.answer) return;
    // Always answered through the scheduler, never inside charge(): callers see a real asynchronous API.
    scheduler_.call_at(clock_.now() + latency, [answer = std::move(*decision.answer),
                                                on_answer = std::move(on_answer)]() mutable { on_answer(answer); });
}

domain::Duration SimulatedGateway::latency_locked() {
    if (options_.latency_max <= options_.latency_min) return options_.latency_min;
    auto const spread = static_cast<std::uint64_t>((options_.latency_max - options_.latency_min).count());
    return options_.latency_min + domain::Duration(static_cast<domain::Duration::rep>(random_.uniform(spread)));
}

void SimulatedGateway::lookup(std::string idempotency_key, std::function<void(application::ChargeStatus)> on_answer) {
    using application::ChargeStatus;
    ChargeStatus status = ChargeStatus::not_found();
    domain::Duration latency{0};
    {
        std::lock_guard lock(mutex_);
        domain::Timestamp const now = clock_.now();
        if (auto it = answered_.find(idempotency_key); it != answered_.end() && now >= it->second.visible_at) {
            ChargeAnswer const& outcome = it->second.outcome;
            if (!outcome.succeeded()) status = ChargeStatus::refused(outcome.failure->reason);
            else if (now < it->second.final_at) status = ChargeStatus::processing();
            else status = ChargeStatus::booked(outcome.reference, *outcome.charged);
        }
        latency = latency_locked();
    }
    scheduler_.call_at(clock_.now() + latency,
                       [status = std::move(status), on_answer = std::move(on_answer)]() mutable { on_answer(status); });
}

void SimulatedGateway::set_options(SimulatedGatewayOptions options) {
    std::lock_guard lock(mutex_);
    options_ = options;
}

std::vector<GatewayCharge> SimulatedGateway::ledger() const {
    std::lock_guard lock(mutex_);
    return ledger_;
}

std::size_t SimulatedGateway::charges_for(domain::InvoiceId const& invoice) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(ledger_.begin(), ledger_.end(), [&](GatewayCharge const& c) { return c.invoice_id == invoice; }));
}

std::size_t SimulatedGateway::calls() const {
    std::lock_guard lock(mutex_);
    return keys_seen_.size();
}

std::vector<std::string> SimulatedGateway::keys_seen() const {
    std::lock_guard lock(mutex_);
    return keys_seen_;
}

std::size_t SimulatedGateway::late_bookings() const {
    std::lock_guard lock(mutex_);
    return late_bookings_;
}

std::size_t SimulatedGateway::bookings_pending() const {
    std::lock_guard lock(mutex_);
    return bookings_pending_;
}

} // namespace payments::infrastructure
