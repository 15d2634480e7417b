# Run by ctest (cmake -P): installs the build into a fresh prefix, builds the
# examples against it with find_package(payments CONFIG) and runs them, checks
# pkg-config against the prefix, and builds examples/embedded against the
# build tree's export.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR BUILD_TYPE)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "consumer_test.cmake needs -D${var}=...")
    endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" COMMAND_ERROR_IS_FATAL ANY)

# Configures and builds examples/<name> with <package_path> as CMAKE_PREFIX_PATH.
function(build_example name package_path build)
    execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/examples/${name}" -B "${build}" -G "${GENERATOR}"
                            -DCMAKE_BUILD_TYPE=${BUILD_TYPE} "-DCMAKE_PREFIX_PATH=${package_path}"
                    COMMAND_ERROR_IS_FATAL ANY)
    execute_process(COMMAND "${CMAKE_COMMAND}" --build "${build}" COMMAND_ERROR_IS_FATAL ANY)
endfunction()

build_example(embedded "${prefix}" "${WORK_DIR}/embedded")
execute_process(COMMAND "${WORK_DIR}/embedded/payments-embedded" COMMAND_ERROR_IS_FATAL ANY)

# The application's own adapters: a PAID invoice, and every event printed.
build_example(custom_adapters "${prefix}" "${WORK_DIR}/custom_adapters")
execute_process(COMMAND "${WORK_DIR}/custom_adapters/payments-custom-adapters"
                OUTPUT_VARIABLE output COMMAND_ERROR_IS_FATAL ANY)
message(STATUS "payments-custom-adapters:\n${output}")
foreach(expected
        "event: InvoiceCreated inv_[a-z0-9]+ 42.00 EUR \"Team plan\""
        "event: PaymentRequested inv_[a-z0-9]+ pay_[a-z0-9]+ #1 42.00 EUR card"
        "event: PaymentSucceeded inv_[a-z0-9]+ pay_[a-z0-9]+ #1 42.00 EUR fp_1"
        "event: InvoicePaid inv_[a-z0-9]+ pay_[a-z0-9]+ #1 42.00 EUR"
        "invoice inv_[a-z0-9]+ 42.00 EUR PAID after 1 attempt\\(s\\) through fakepay"
        "\\[info\\] payment requested"
        "metrics: requested=1 succeeded=1 failed=0 retries=0")
    if(NOT output MATCHES "${expected}")
        message(FATAL_ERROR "payments-custom-adapters did not print /${expected}/")
    endif()
endforeach()

# pkg-config against the prefix: flags, and a one-file program built with them.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs payments OUTPUT_VARIABLE flags
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${PKG_CONFIG}" --modversion payments OUTPUT_VARIABLE pc_version
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
file(WRITE "${WORK_DIR}/pkg/version.cpp" [=[
#include <payments/version.hpp>
#include <cstdio>
#include <cstring>
int main() {
    std::printf("%s\n", payments::version());
    return std::strcmp(payments::version(), PAYMENTS_VERSION) == 0 ? 0 : 1;
}
]=])
separate_arguments(flags UNIX_COMMAND "${flags}")
execute_process(COMMAND c++ "${WORK_DIR}/pkg/version.cpp" -o "${WORK_DIR}/pkg/version" ${flags} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${WORK_DIR}/pkg/version" OUTPUT_VARIABLE printed OUTPUT_STRIP_TRAILING_WHITESPACE
                COMMAND_ERROR_IS_FATAL ANY)
if(NOT printed STREQUAL pc_version)
    message(FATAL_ERROR "payments::version() is '${printed}', payments.pc says '${pc_version}'")
endif()

# The build tree's export, without installing.
build_example(embedded "${BUILD_DIR}" "${WORK_DIR}/embedded-build-tree")
