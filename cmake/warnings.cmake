# Warnings for the project's own targets; PAYMENTS_WERROR never reaches consumers.
function(payments_set_warnings target)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
                                             -Wold-style-cast -Woverloaded-virtual)
    if(PAYMENTS_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
endfunction()
