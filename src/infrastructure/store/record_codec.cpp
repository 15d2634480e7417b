#include "record_codec.hpp"

#include "../codec/event_layout.hpp"

#include <cstdint>

namespace payments::infrastructure::codec {

using namespace domain;

namespace {

// The format every record is written in today. Version 1 is the first.
constexpr std::uint8_t current_format = 1;

class Writer : public VarintWriter {
public:
    explicit Writer(std::uint8_t tag) {
        byte(current_format);
        byte(tag);
    }

    void text(std::string_view t) {
        varint(t.size());
        out_.append(t);
    }

    void optional_time(std::optional<Timestamp> const& t) {
        byte(t ? 1 : 0);
        if (t) time(*t);
    }

    void money(Money m) {
        integer(m.minor_units());
        text(m.currency().code());
    }

    void optional_failure(std::optional<Failure> const& f) {
        byte(f ? 1 : 0);
        if (f) write_failure(*this, *f);
    }

    std::string take() { return std::move(out_); }
};

// Reads what Writer wrote; every read is bounds-checked.
class Reader {
public:
    Reader(std::string_view bytes, std::uint8_t tag) : bytes_(bytes) {
        std::uint8_t const format = byte();
        if (format != current_format) throw CorruptRecord("unknown record format " + std::to_string(format));
        if (byte() != tag) throw CorruptRecord("a record of another kind");
    }

    // A field added at the end of a record: records written before it have none.
    bool at_end() const { return pos_ == bytes_.size(); }
    std::string_view trailing_text() { return at_end() ? std::string_view() : text(); }

    std::uint8_t byte() {
        if (pos_ >= bytes_.size()) throw CorruptRecord("truncated record");
        return static_cast<std::uint8_t>(bytes_[pos_++]);
    }

    std::uint64_t varint() {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            std::uint8_t const b = byte();
            v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if (b < 0x80) return v;
        }
        throw CorruptRecord("malformed integer");
    }

    std::int64_t integer() { return unzigzag(varint()); }

    std::string_view text() {
        std::uint64_t const n = varint();
        if (n > bytes_.size() - pos_) throw CorruptRecord("truncated text");
        std::string_view const t = bytes_.substr(pos_, n);
        pos_ += n;
        return t;
    }

    template <class Id>
    Id id() {
        std::string_view const t = text();
        if (t.empty()) return Id();
        auto parsed = Id::parse(t);
        if (!parsed) throw CorruptRecord("invalid id in record");
        return *parsed;
    }

    Timestamp time() { return Timestamp(Duration(integer())); }

    std::optional<Timestamp> optional_time() {
        if (byte() == 0) return std::nullopt;
        return time();
    }

    Money money() {
        std::int64_t const minor = integer();
        auto currency = Currency::from_code(text());
        if (!currency) throw CorruptRecord("invalid currency in record");
        auto money = Money::of(minor, *currency);
        if (!money) throw CorruptRecord("invalid amount in record");
        return *money;
    }

    Failure failure() {
        auto const kind = byte();
        if (kind > static_cast<std::uint8_t>(FailureKind::unknown_outcome)) throw CorruptRecord("invalid failure kind");
        return {static_cast<FailureKind>(kind), std::string(text())};
    }

    std::optional<Failure> optional_failure() {
        if (byte() == 0) return std::nullopt;
        return failure();
    }

    template <class Enum>
    Enum enumerator(Enum last) {
        auto const v = byte();
        if (v > static_cast<std::uint8_t>(last)) throw CorruptRecord("invalid status in record");
        return static_cast<Enum>(v);
    }

private:
    std::string_view bytes_;
    std::size_t pos_ = 0;
};

// Record kinds: a record of one kind is never read as another.
enum Tag : std::uint8_t { invoice_tag = 1, payment_tag, event_tag, outcome_tag };

} // namespace

std::string encode(Invoice const& invoice) {
    InvoiceSnapshot const s = invoice.snapshot();
    Writer w(invoice_tag);
    w.text(s.id.str());
    w.money(s.amount);
    w.text(s.description);
    w.byte(static_cast<std::uint8_t>(s.status));
    w.varint(s.attempts.size());
    for (PaymentId const& id : s.attempts) w.text(id.str());
    w.integer(s.cycle_start);
    w.text(s.current_method);
    w.optional_time(s.next_retry_at);
    w.optional_failure(s.last_failure);
    w.text(s.paid_by.str());
    w.text(s.review_reason);
    w.text(s.under_review.str());
    w.time(s.created_at);
    w.time(s.updated_at);
    w.varint(s.version);
    return w.take();
}

Invoice decode_invoice(std::string_view bytes) {
    Reader r(bytes, invoice_tag);
    InvoiceId id = r.id<InvoiceId>();
    Money const amount = r.money();
    InvoiceSnapshot s{std::move(id), amount, std::string(r.text()), r.enumerator(InvoiceStatus::needs_review), {}};
    std::uint64_t const attempts = r.varint();
    if (attempts > bytes.size()) throw CorruptRecord("invalid attempt count");
    for (std::uint64_t i = 0; i < attempts; ++i) s.attempts.push_back(r.id<PaymentId>());
    s.cycle_start = static_cast<int>(r.integer());
    s.current_method = std::string(r.text());
    s.next_retry_at = r.optional_time();
    s.last_failure = r.optional_failure();
    s.paid_by = r.id<PaymentId>();
    s.review_reason = std::string(r.text());
    s.under_review = r.id<PaymentId>();
    s.created_at = r.time();
    s.updated_at = r.time();
    s.version = r.varint();
    return Invoice::restore(std::move(s));
}

std::string encode(Payment const& payment) {
    PaymentSnapshot const s = payment.snapshot();
    Writer w(payment_tag);
    w.text(s.id.str());
    w.text(s.invoice_id.str());
    w.integer(s.attempt);
    w.money(s.amount);
    w.text(s.payment_method);
    w.text(s.gateway_key);
    w.text(s.correlation_id.str());
    w.byte(static_cast<std::uint8_t>(s.status));
    w.optional_failure(s.failure);
    w.text(s.gateway_reference);
    w.optional_time(s.unknown_since);
    w.time(s.not_before);
    w.time(s.created_at);
    w.time(s.updated_at);
    w.varint(s.version);
    w.text(s.gateway); // last: older records end before it
    return w.take();
}

Payment decode_payment(std::string_view bytes) {
    Reader r(bytes, payment_tag);
    PaymentId id = r.id<PaymentId>();
    InvoiceId invoice_id = r.id<InvoiceId>();
    int const attempt = static_cast<int>(r.integer());
    Money const amount = r.money();
    PaymentSnapshot s{std::move(id), std::move(invoice_id), attempt, amount, std::string(r.text()),
                      std::string(r.text()), r.id<CorrelationId>()};
    s.status = r.enumerator(PaymentStatus::unknown);
    s.failure = r.optional_failure();
    s.gateway_reference = std::string(r.text());
    s.unknown_since = r.optional_time();
    s.not_before = r.time();
    s.created_at = r.time();
    s.updated_at = r.time();
    s.version = r.varint();
    s.gateway = std::string(r.trailing_text());
    return Payment::restore(std::move(s));
}

std::string encode(Event const& event) {
    Writer w(event_tag);
    write_event(w, event);
    return w.take();
}

Event decode_event(std::string_view bytes) {
    Reader r(bytes, event_tag);
    return read_event(r, [](std::uint8_t kind) { throw CorruptRecord("unknown event kind " + std::to_string(kind)); });
}

std::string encode(application::PaymentResult const& outcome) {
    Writer w(outcome_tag);
    if (outcome) {
        w.byte(1);
        std::string const payment = encode(*outcome);
        w.text(payment);
    } else {
        w.byte(0);
        w.varint(static_cast<std::uint64_t>(outcome.error().code));
        w.text(outcome.error().detail);
    }
    return w.take();
}

application::PaymentResult decode_outcome(std::string_view bytes) {
    Reader r(bytes, outcome_tag);
    if (r.byte() == 1) return decode_payment(r.text());
    auto const code = static_cast<ErrorCode>(r.varint());
    return Error{code, std::string(r.text())};
}

} // namespace payments::infrastructure::codec
