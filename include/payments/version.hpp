#pragma once
// The library's version. CMakeLists.txt reads its numbers from here, so this
// file is the one place a release changes.

#define PAYMENTS_VERSION_MAJOR 0
#define PAYMENTS_VERSION_MINOR 2
#define PAYMENTS_VERSION_PATCH 0
/// "MAJOR.MINOR.PATCH" of these headers.
#define PAYMENTS_VERSION "0.2.0"

namespace payments {

/// The version of the library linked in ("0.2.0"); compare it with
/// PAYMENTS_VERSION to detect headers and library of different releases.
char const* version() noexcept;

} // namespace payments
