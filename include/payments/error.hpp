#pragma once
// One error style for the whole library: business rejections are values of
// Result<T>; exceptions are reserved for bugs (calling .value() on an error).

#include <boost/assert/source_location.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <iosfwd>
#include <string>
#include <string_view>
#include <type_traits>

namespace payments {

/// Why an operation was refused; stable, so callers and tests can switch on it.
enum class ErrorCode {
    invalid_argument = 1,   ///< malformed input (id, key, payment method, description)
    invalid_amount,         ///< non-positive or out-of-range amount where a charge is meant
    unknown_currency,       ///< not an active ISO 4217 code
    currency_mismatch,      ///< arithmetic across two currencies
    overflow,               ///< the result does not fit in 64-bit minor units
    invalid_state,          ///< the aggregate's state machine forbids the command
    not_found,              ///< no such invoice or payment
    already_exists,         ///< an invoice with this id exists
    invoice_already_paid,   ///< paying a PAID invoice
    payment_in_progress,    ///< paying an invoice that is PROCESSING
    stale_attempt,          ///< an outcome for an attempt that is no longer current
    conflict,               ///< optimistic concurrency: the aggregate changed underneath
    idempotency_key_reused, ///< same key, different request
    idempotency_key_in_use, ///< same key while the first request is still running
    unavailable,            ///< the component is stopping or stopped
    storage_unavailable,    ///< the durable store cannot write (disk full, I/O error, read-only): nothing was committed
};

/// A typed error with a human-readable reason.
struct Error {
    ErrorCode code{};
    std::string detail;

    friend bool operator==(Error const&, Error const&) = default;
};

/// The stable snake_case name of a code, e.g. "invoice_already_paid".
std::string_view to_string(ErrorCode code) noexcept;

/// "not_found: no invoice inv_1", for diagnostics.
std::ostream& operator<<(std::ostream& os, Error const& error);

/// The Boost.System category, so edges can log an ErrorCode as an error_code.
boost::system::error_category const& error_category() noexcept;
boost::system::error_code make_error_code(ErrorCode code) noexcept;

/// Called by Result<T>::value() on an error: that is a bug, so it throws.
[[noreturn]] void throw_exception_from_error(Error const& error, boost::source_location const& loc);

/// Value-or-error for every fallible operation of the library.
template <class T>
using Result = boost::system::result<T, Error>;

/// Shorthand for returning an error: `return reject(ErrorCode::not_found, "no invoice inv_1");`
inline Error reject(ErrorCode code, std::string detail) { return Error{code, std::move(detail)}; }

} // namespace payments

template <>
struct boost::system::is_error_code_enum<payments::ErrorCode> : std::true_type {};
