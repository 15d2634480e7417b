# Installs the library, its headers and a CMake config package, the way fmt does:
# consumers write find_package(payments CONFIG REQUIRED) and link payments::payments.
include(CMakePackageConfigHelpers)

set(PAYMENTS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/payments)

install(TARGETS payments EXPORT payments-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/payments DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT payments-targets NAMESPACE payments:: DESTINATION ${PAYMENTS_CMAKE_DIR})

configure_package_config_file(cmake/paymentsConfig.cmake.in ${PROJECT_BINARY_DIR}/paymentsConfig.cmake
                              INSTALL_DESTINATION ${PAYMENTS_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/paymentsConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/paymentsConfig.cmake ${PROJECT_BINARY_DIR}/paymentsConfigVersion.cmake
        DESTINATION ${PAYMENTS_CMAKE_DIR})

# The same targets from the build tree: find_package(payments) with
# payments_DIR (or CMAKE_PREFIX_PATH) set to the build directory.
export(EXPORT payments-targets NAMESPACE payments:: FILE ${PROJECT_BINARY_DIR}/payments-targets.cmake)

# pkg-config, relocatable: the prefix is found from where payments.pc lies.
file(RELATIVE_PATH PAYMENTS_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/payments.pc.in ${PROJECT_BINARY_DIR}/payments.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/payments.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/payments)
