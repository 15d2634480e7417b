#pragma once
// fmt formatters for the library's values and events, so that an application
// prints them without std::visit or a helper of its own:
//
//     fmt::print("{}\n", event);            // "InvoicePaid inv_3k9… pay_7q2… #1 19.99 USD"
//     fmt::print("{} is {}\n", invoice.id(), invoice.status());
//
// Ids, currencies, statuses and failure kinds take the string format specs
// (`{:>12}`); Money, failures, timestamps and events take none.
//
// Timestamps (domain::Timestamp, a system_clock time point in microseconds)
// print as RFC 3339 in UTC with milliseconds, "2026-01-01T12:00:00.250Z".
// This specialisation replaces <fmt/chrono.h>'s for that one type: include
// this header before formatting a domain::Timestamp anywhere in a program.

#include <payments/domain/events.hpp>
#include <payments/domain/ids.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/money.hpp>
#include <payments/domain/payment.hpp>
#include <payments/domain/time.hpp>

#include <fmt/format.h>

#include <chrono>
#include <string_view>
#include <variant>

namespace payments::detail {

/// A formatter that takes no format spec.
struct PlainFormatter {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
};

/// "<kind> <invoice>[ <payment> #<attempt>]": how every event begins.
template <class Out>
Out format_event_head(Out out, std::string_view kind, domain::EventEnvelope const& env) {
    out = fmt::format_to(out, "{} {}", kind, env.invoice_id.str());
    if (!env.payment_id.empty()) out = fmt::format_to(out, " {} #{}", env.payment_id.str(), env.attempt);
    return out;
}

} // namespace payments::detail

/// An id prints as its text: "inv_3k9…".
template <class Tag>
struct fmt::formatter<payments::domain::Id<Tag>> : fmt::formatter<std::string_view> {
    auto format(payments::domain::Id<Tag> const& id, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(id.str(), ctx);
    }
};

/// A currency prints as its ISO 4217 code: "USD".
template <>
struct fmt::formatter<payments::domain::Currency> : fmt::formatter<std::string_view> {
    auto format(payments::domain::Currency const& currency, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(currency.code(), ctx);
    }
};

/// Money prints in major units with its currency: "10.50 USD", "1050 JPY".
template <>
struct fmt::formatter<payments::domain::Money> : payments::detail::PlainFormatter {
    auto format(payments::domain::Money const& money, fmt::format_context& ctx) const {
        return fmt::format_to(ctx.out(), "{}", money.to_string());
    }
};

/// "PENDING", "PROCESSING", "PAID", "FAILED", "NEEDS_REVIEW".
template <>
struct fmt::formatter<payments::domain::InvoiceStatus> : fmt::formatter<std::string_view> {
    auto format(payments::domain::InvoiceStatus status, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(to_string(status), ctx);
    }
};

/// "REQUESTED", "SUCCEEDED", "FAILED", "UNKNOWN".
template <>
struct fmt::formatter<payments::domain::PaymentStatus> : fmt::formatter<std::string_view> {
    auto format(payments::domain::PaymentStatus status, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(to_string(status), ctx);
    }
};

/// "DECLINED", "TRANSIENT", "UNKNOWN_OUTCOME".
template <>
struct fmt::formatter<payments::domain::FailureKind> : fmt::formatter<std::string_view> {
    auto format(payments::domain::FailureKind kind, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(to_string(kind), ctx);
    }
};

/// "DECLINED: insufficient funds".
template <>
struct fmt::formatter<payments::domain::Failure> : payments::detail::PlainFormatter {
    auto format(payments::domain::Failure const& failure, fmt::format_context& ctx) const {
        return fmt::format_to(ctx.out(), "{}: {}", to_string(failure.kind), failure.reason);
    }
};

/// RFC 3339 in UTC with milliseconds: "2026-01-01T12:00:00.250Z".
template <>
struct fmt::formatter<payments::domain::Timestamp> : payments::detail::PlainFormatter {
    auto format(payments::domain::Timestamp at, fmt::format_context& ctx) const {
        using namespace std::chrono;
        auto const day = floor<days>(at);
        year_month_day const date(day);
        hh_mm_ss const time(floor<milliseconds>(at - day));
        return fmt::format_to(ctx.out(), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(date.year()),
                              static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                              time.hours().count(), time.minutes().count(), time.seconds().count(),
                              time.subseconds().count());
    }
};

/// `InvoiceCreated inv_… 19.99 USD "Annual plan"`.
template <>
struct fmt::formatter<payments::domain::InvoiceCreated> : payments::detail::PlainFormatter {
    auto format(payments::domain::InvoiceCreated const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "InvoiceCreated", e.envelope);
        out = fmt::format_to(out, " {}", e.amount);
        if (!e.description.empty()) out = fmt::format_to(out, " \"{}\"", e.description);
        return out;
    }
};

/// `PaymentRequested inv_… pay_… #2 19.99 USD pm_card_ok`, and `not before <time>` for a retry.
template <>
struct fmt::formatter<payments::domain::PaymentRequested> : payments::detail::PlainFormatter {
    auto format(payments::domain::PaymentRequested const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "PaymentRequested", e.envelope);
        out = fmt::format_to(out, " {} {}", e.amount, e.payment_method.empty() ? "(default method)" : e.payment_method);
        if (e.not_before > e.envelope.occurred_at) out = fmt::format_to(out, " not before {}", e.not_before);
        return out;
    }
};

/// `PaymentSucceeded inv_… pay_… #1 19.99 USD ch_…`.
template <>
struct fmt::formatter<payments::domain::PaymentSucceeded> : payments::detail::PlainFormatter {
    auto format(payments::domain::PaymentSucceeded const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "PaymentSucceeded", e.envelope);
        return fmt::format_to(out, " {} {}", e.amount, e.gateway_reference);
    }
};

/// `PaymentFailed inv_… pay_… #1 TRANSIENT: gateway unavailable`.
template <>
struct fmt::formatter<payments::domain::PaymentFailed> : payments::detail::PlainFormatter {
    auto format(payments::domain::PaymentFailed const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "PaymentFailed", e.envelope);
        return fmt::format_to(out, " {}", e.failure);
    }
};

/// `InvoicePaid inv_… pay_… #3 19.99 USD`.
template <>
struct fmt::formatter<payments::domain::InvoicePaid> : payments::detail::PlainFormatter {
    auto format(payments::domain::InvoicePaid const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "InvoicePaid", e.envelope);
        return fmt::format_to(out, " {}", e.amount);
    }
};

/// `InvoiceFailed inv_… pay_… #1 DECLINED: card declined`.
template <>
struct fmt::formatter<payments::domain::InvoiceFailed> : payments::detail::PlainFormatter {
    auto format(payments::domain::InvoiceFailed const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "InvoiceFailed", e.envelope);
        return fmt::format_to(out, " {}", e.failure);
    }
};

/// `InvoiceNeedsReview inv_… pay_… #1: <reason>`.
template <>
struct fmt::formatter<payments::domain::InvoiceNeedsReview> : payments::detail::PlainFormatter {
    auto format(payments::domain::InvoiceNeedsReview const& e, fmt::format_context& ctx) const {
        auto out = payments::detail::format_event_head(ctx.out(), "InvoiceNeedsReview", e.envelope);
        return fmt::format_to(out, ": {}", e.reason);
    }
};

/// Any event, as its own kind prints.
template <>
struct fmt::formatter<payments::domain::Event> : payments::detail::PlainFormatter {
    auto format(payments::domain::Event const& event, fmt::format_context& ctx) const {
        return std::visit([&](auto const& e) { return fmt::format_to(ctx.out(), "{}", e); }, event);
    }
};
