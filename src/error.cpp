#include <payments/error.hpp>

#include <ostream>

namespace payments {

std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::invalid_amount: return "invalid_amount";
    case ErrorCode::unknown_currency: return "unknown_currency";
    case ErrorCode::currency_mismatch: return "currency_mismatch";
    case ErrorCode::overflow: return "overflow";
    case ErrorCode::invalid_state: return "invalid_state";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::already_exists: return "already_exists";
    case ErrorCode::invoice_already_paid: return "invoice_already_paid";
    case ErrorCode::payment_in_progress: return "payment_in_progress";
    case ErrorCode::stale_attempt: return "stale_attempt";
    case ErrorCode::conflict: return "conflict";
    case ErrorCode::idempotency_key_reused: return "idempotency_key_reused";
    case ErrorCode::idempotency_key_in_use: return "idempotency_key_in_use";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::storage_unavailable: return "storage_unavailable";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, Error const& error) {
    return os << to_string(error.code) << ": " << error.detail;
}

namespace {

// The category behind make_error_code; messages are the stable names.
class PaymentsCategory final : public boost::system::error_category {
public:
    char const* name() const noexcept override { return "payments"; }
    std::string message(int ev) const override { return std::string(to_string(static_cast<ErrorCode>(ev))); }
};

} // namespace

boost::system::error_category const& error_category() noexcept {
    static PaymentsCategory const category;
    return category;
}

boost::system::error_code make_error_code(ErrorCode code) noexcept {
    return {static_cast<int>(code), error_category()};
}

void throw_exception_from_error(Error const& error, boost::source_location const& loc) {
    throw boost::system::system_error(make_error_code(error.code),
                                      error.detail + " [at " + loc.file_name() + ":" +
                                          std::to_string(loc.line()) + "]");
}

} // namespace payments
