#include <payments/version.hpp>

namespace payments {

char const* version() noexcept { return PAYMENTS_VERSION; }

} // namespace payments
