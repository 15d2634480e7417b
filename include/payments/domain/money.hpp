#pragma once

#include <payments/error.hpp>

#include <array>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>

namespace payments::domain {

/// An active ISO 4217 currency and the number of digits of its minor unit
/// (USD 2, JPY 0, BHD 3, CLF 4).
class Currency {
public:
    /// Looks an upper-case three-letter code up in the ISO 4217 table.
    static Result<Currency> from_code(std::string_view code);

    /// US dollars, the default currency of the example server.
    static Currency usd() noexcept { return Currency({'U', 'S', 'D'}, 2); }

    std::string_view code() const noexcept { return {code_.data(), code_.size()}; }
    int exponent() const noexcept { return exponent_; }

    friend bool operator==(Currency const&, Currency const&) = default;

private:
    Currency(std::array<char, 3> code, int exponent) noexcept
        : code_(code), exponent_(static_cast<std::int8_t>(exponent)) {}

    std::array<char, 3> code_;
    std::int8_t exponent_;
};

/// An amount in integer minor units of one currency: 1050 USD is $10.50,
/// 1050 JPY is ¥1050. No floating point is involved anywhere.
class Money {
public:
    /// The largest amount accepted, 10^15 - 1 minor units: every amount stays
    /// exactly representable as a JSON number (2^53) for clients that parse doubles.
    static constexpr std::int64_t max_minor_units = 999'999'999'999'999;

    /// Any amount in range, including zero and negatives (refunds, balances).
    static Result<Money> of(std::int64_t minor_units, Currency currency);
    /// An amount that can be charged: strictly positive and in range.
    static Result<Money> positive(std::int64_t minor_units, Currency currency);

    std::int64_t minor_units() const noexcept { return minor_units_; }
    Currency currency() const noexcept { return currency_; }

    /// Sums of the same currency; fails on a mismatch or past the range.
    Result<Money> plus(Money other) const;

    /// "10.50 USD", "1050 JPY", "-0.005 BHD".
    std::string to_string() const;

    friend bool operator==(Money const&, Money const&) = default;
    friend std::ostream& operator<<(std::ostream& os, Money const& money);

private:
    Money(std::int64_t minor_units, Currency currency) noexcept
        : minor_units_(minor_units), currency_(currency) {}

    std::int64_t minor_units_;
    Currency currency_;
};

} // namespace payments::domain
