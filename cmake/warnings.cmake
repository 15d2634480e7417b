# Warnings for the project's own targets; PAYMENTS_WERROR never reaches consumers.
function(payments_set_warnings target)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
                                             -Wold-style-cast -Woverloaded-virtual)
    # GCC 12 reports impossible overlaps in std::string concatenation at -O3
    # (GCC bug 105329, fixed in 13): a false positive, not a finding.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
    if(PAYMENTS_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
endfunction()
