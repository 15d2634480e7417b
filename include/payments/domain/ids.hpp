#pragma once

#include <payments/domain/detail/id_text.hpp>
#include <payments/domain/random.hpp>
#include <payments/error.hpp>

#include <compare>
#include <cstddef>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace payments::domain {

/// True for 1..64 characters of [A-Za-z0-9_-]: safe in URLs, logs and file names.
bool is_valid_id(std::string_view text) noexcept;

/// Room for a generated id: a prefix of up to 8 characters and 26 more.
inline constexpr std::size_t max_generated_id = 8 + 26;

/// `prefix` followed by 26 characters of lowercase base32 carrying 128 random
/// bits, written to `out` (max_generated_id characters); returns the id.
std::string_view generate_id(std::string_view prefix, Random& random, char* out);

/// A validated identifier; the Tag gives it a name, a prefix and a distinct type.
template <class Tag>
class Id {
public:
    /// The empty id: "none", e.g. the payment id of an InvoiceCreated event.
    Id() = default;

    /// Validates a caller-supplied id.
    static Result<Id> parse(std::string_view text) {
        if (!is_valid_id(text))
            return reject(ErrorCode::invalid_argument,
                        std::string(Tag::name) + " must be 1-64 characters of A-Z a-z 0-9 _ -");
        return Id(text);
    }



    /// A fresh random id such as `inv_3k9…`.
    static Id generate(Random& random) {
        char text[max_generated_id];
        return Id(generate_id(Tag::prefix, random, text));
    }

    std::string_view str() const noexcept { return text_.view(); }
    bool empty() const noexcept { return str().empty(); }

    friend auto operator<=>(Id const& a, Id const& b) noexcept { return a.str() <=> b.str(); }
    friend bool operator==(Id const& a, Id const& b) noexcept { return a.str() == b.str(); }
    friend std::ostream& operator<<(std::ostream& os, Id const& id) { return os << id.str(); }

private:
    explicit Id(std::string_view text) : text_(text) {}

    detail::IdText text_;
};

/// Names and prefixes invoice ids: "inv_…".
struct InvoiceIdTag {
    static constexpr std::string_view name = "invoice id";
    static constexpr std::string_view prefix = "inv_";
};
/// Names and prefixes payment ids: "pay_…".
struct PaymentIdTag {
    static constexpr std::string_view name = "payment id";
    static constexpr std::string_view prefix = "pay_";
};
/// Names and prefixes event ids: "evt_…".
struct EventIdTag {
    static constexpr std::string_view name = "event id";
    static constexpr std::string_view prefix = "evt_";
};
/// Names and prefixes correlation ids: "req_…", one per request.
struct CorrelationIdTag {
    static constexpr std::string_view name = "correlation id";
    static constexpr std::string_view prefix = "req_";
};

using InvoiceId = Id<InvoiceIdTag>;         ///< an invoice's id
using PaymentId = Id<PaymentIdTag>;         ///< a payment attempt's id
using EventId = Id<EventIdTag>;             ///< an event's id, unique per event
using CorrelationId = Id<CorrelationIdTag>; ///< the request that caused an event

} // namespace payments::domain

/// Hashes an id by its text, for unordered containers.
template <class Tag>
struct std::hash<payments::domain::Id<Tag>> {
    std::size_t operator()(payments::domain::Id<Tag> const& id) const noexcept {
        return std::hash<std::string_view>{}(id.str());
    }
};
