#include <payments/domain/money.hpp>

#include <algorithm>
#include <cstdlib>
#include <ostream>

namespace payments::domain {
namespace {

struct CurrencyEntry {
    char code[4];
    int exponent;
};

// Active ISO 4217 currencies (list one, 2024), sorted by code for binary search.
// Funds, precious metals and testing codes (X…, except the CFA/CFP francs and XCD)
// are left out on purpose: nobody is charged in them.
constexpr CurrencyEntry currencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"ANG", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2},
    {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BGN", 2}, {"BHD", 3}, {"BIF", 0},
    {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2},
    {"BZD", 2}, {"CAD", 2}, {"CDF", 2}, {"CHF", 2}, {"CLF", 4}, {"CLP", 0}, {"CNY", 2}, {"COP", 2},
    {"CRC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2},
    {"EGP", 2}, {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2}, {"GBP", 2}, {"GEL", 2},
    {"GHS", 2}, {"GIP", 2}, {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2},
    {"HTG", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0},
    {"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KGS", 2}, {"KHR", 2}, {"KMF", 0}, {"KPW", 2},
    {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2},
    {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2},
    {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2}, {"MWK", 2}, {"MXN", 2}, {"MYR", 2}, {"MZN", 2},
    {"NAD", 2}, {"NGN", 2}, {"NIO", 2}, {"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2},
    {"PEN", 2}, {"PGK", 2}, {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2}, {"RON", 2},
    {"RSD", 2}, {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2}, {"SCR", 2}, {"SDG", 2}, {"SEK", 2},
    {"SGD", 2}, {"SHP", 2}, {"SLE", 2}, {"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2},
    {"SYP", 2}, {"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2}, {"TRY", 2},
    {"TTD", 2}, {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0}, {"USD", 2}, {"UYU", 2}, {"UYW", 4},
    {"UZS", 2}, {"VED", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAF", 0}, {"XCD", 2},
    {"XOF", 0}, {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWL", 2},
};

constexpr bool sorted_by_code() {
    for (std::size_t i = 1; i < std::size(currencies); ++i)
        if (std::string_view(currencies[i - 1].code) >= std::string_view(currencies[i].code)) return false;
    return true;
}
static_assert(sorted_by_code(), "the currency table must stay sorted for binary search");

} // namespace

Result<Currency> Currency::from_code(std::string_view code) {
    auto const* it = std::lower_bound(std::begin(currencies), std::end(currencies), code,
                                      [](CurrencyEntry const& e, std::string_view c) { return e.code < c; });
    if (code.size() != 3 || it == std::end(currencies) || std::string_view(it->code) != code)
        return reject(ErrorCode::unknown_currency,
                    "currency must be an active ISO 4217 code such as USD, EUR or JPY");
    return Currency({code[0], code[1], code[2]}, it->exponent);
}

Result<Money> Money::of(std::int64_t minor_units, Currency currency) {
    if (minor_units > max_minor_units || minor_units < -max_minor_units)
        return reject(ErrorCode::invalid_amount, "amount must be at most 999999999999999 minor units");
    return Money(minor_units, currency);
}

Result<Money> Money::positive(std::int64_t minor_units, Currency currency) {
    if (minor_units <= 0) return reject(ErrorCode::invalid_amount, "amount must be a positive number of minor units");
    return of(minor_units, currency);
}

Result<Money> Money::plus(Money other) const {
    if (other.currency_ != currency_)
        return reject(ErrorCode::currency_mismatch,
                    "cannot add " + std::string(other.currency_.code()) + " to " + std::string(currency_.code()));
    std::int64_t sum = 0;
    if (__builtin_add_overflow(minor_units_, other.minor_units_, &sum))
        return reject(ErrorCode::overflow, "sum does not fit in 64 bits");
    auto result = of(sum, currency_);
    if (!result) return reject(ErrorCode::overflow, result.error().detail);
    return result;
}

std::string Money::to_string() const {
    // |minor_units_| <= max_minor_units, so negation cannot overflow.
    std::string digits = std::to_string(minor_units_ < 0 ? -minor_units_ : minor_units_);
    int const exponent = currency_.exponent();
    if (exponent > 0) {
        if (digits.size() <= static_cast<std::size_t>(exponent))
            digits.insert(0, static_cast<std::size_t>(exponent) + 1 - digits.size(), '0');
        digits.insert(digits.size() - static_cast<std::size_t>(exponent), 1, '.');
    }
    return (minor_units_ < 0 ? "-" : "") + digits + " " + std::string(currency_.code());
}

std::ostream& operator<<(std::ostream& os, Money const& money) { return os << money.to_string(); }

} // namespace payments::domain
