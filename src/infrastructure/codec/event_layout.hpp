#pragma once
// The binary layout of an event, written once for the two places that keep
// events as bytes: the bus's packed events (in memory, compact) and the
// durable stores' records (on disk, read back with every field checked).
//
// Each brings its own Writer and Reader for the primitives: how text and money
// are laid out, and how a read is checked. What is here is what they share:
// variable-length integers, and the order of an event's fields. A Writer has
// byte, varint, integer, time, text and money; a Reader has byte, integer,
// time, text, money, failure, `id<Id>()` and `trailing_text()` (a field added
// at the end of a record: empty in records written before it).

#include <payments/domain/events.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace payments::infrastructure::codec {

/// Appends bytes and LEB128 integers (signed ones zigzag-encoded) to a string.
class VarintWriter {
public:
    void byte(std::uint8_t b) { out_.push_back(static_cast<char>(b)); }

    void varint(std::uint64_t v) {
        while (v >= 0x80) {
            byte(static_cast<std::uint8_t>(v | 0x80));
            v >>= 7;
        }
        byte(static_cast<std::uint8_t>(v));
    }

    void integer(std::int64_t v) { varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }

    void time(domain::Timestamp t) { integer(t.time_since_epoch().count()); }

protected:
    std::string out_;
};

/// The signed integer a zigzag-encoded varint holds.
constexpr std::int64_t unzigzag(std::uint64_t v) {
    return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

template <class Writer>
void write_failure(Writer& w, domain::Failure const& f) {
    w.byte(static_cast<std::uint8_t>(f.kind));
    w.text(f.reason);
}

/// An event: its kind, its envelope, then the fields of its kind.
template <class Writer>
void write_event(Writer& w, domain::Event const& event) {
    using namespace domain;
    w.byte(static_cast<std::uint8_t>(event.index()));
    EventEnvelope const& e = envelope_of(event);
    w.text(e.id.str());
    w.time(e.occurred_at);
    w.text(e.correlation_id.str());
    w.text(e.invoice_id.str());
    w.text(e.payment_id.str());
    w.integer(e.attempt);
    auto const body = [&w](auto const& ev) {
        using E = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<E, InvoiceCreated>) {
            w.money(ev.amount);
            w.text(ev.description);
        } else if constexpr (std::is_same_v<E, PaymentRequested>) {
            w.money(ev.amount);
            w.text(ev.payment_method);
            w.text(ev.gateway_key);
            w.time(ev.not_before);
            w.text(ev.gateway); // last: older records end before it
        } else if constexpr (std::is_same_v<E, PaymentSucceeded>) {
            w.money(ev.amount);
            w.text(ev.gateway_reference);
        } else if constexpr (std::is_same_v<E, PaymentFailed> || std::is_same_v<E, InvoiceFailed>) {
            write_failure(w, ev.failure);
        } else if constexpr (std::is_same_v<E, InvoicePaid>) {
            w.money(ev.amount);
        } else {
            static_assert(std::is_same_v<E, InvoiceNeedsReview>, "an event kind without a layout");
            w.text(ev.reason);
        }
    };
    std::visit(body, event);
}

/// What write_event wrote. `unknown_kind(kind)` is called (and must throw)
/// for a kind no event has.
template <class Reader, class UnknownKind>
domain::Event read_event(Reader& r, UnknownKind&& unknown_kind) {
    using namespace domain;
    std::uint8_t const kind = r.byte();
    EventEnvelope envelope;
    envelope.id = r.template id<EventId>();
    envelope.occurred_at = r.time();
    envelope.correlation_id = r.template id<CorrelationId>();
    envelope.invoice_id = r.template id<InvoiceId>();
    envelope.payment_id = r.template id<PaymentId>();
    envelope.attempt = static_cast<int>(r.integer());
    switch (kind) {
    case event_index<InvoiceCreated>(): {
        Money const amount = r.money();
        return InvoiceCreated{std::move(envelope), amount, std::string(r.text())};
    }
    case event_index<PaymentRequested>(): {
        Money const amount = r.money();
        std::string method(r.text());
        std::string key(r.text());
        Timestamp const not_before = r.time();
        return PaymentRequested{std::move(envelope), amount,     std::move(method),
                                std::move(key),      not_before, std::string(r.trailing_text())};
    }
    case event_index<PaymentSucceeded>(): {
        Money const amount = r.money();
        return PaymentSucceeded{std::move(envelope), amount, std::string(r.text())};
    }
    case event_index<PaymentFailed>(): return PaymentFailed{std::move(envelope), r.failure()};
    case event_index<InvoicePaid>(): return InvoicePaid{std::move(envelope), r.money()};
    case event_index<InvoiceFailed>(): return InvoiceFailed{std::move(envelope), r.failure()};
    case event_index<InvoiceNeedsReview>(): return InvoiceNeedsReview{std::move(envelope), std::string(r.text())};
    }
    unknown_kind(kind);
    throw std::logic_error("read_event: unknown_kind returned");
}

} // namespace payments::infrastructure::codec
