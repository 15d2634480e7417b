# Run by ctest (cmake -P): installs the build into a fresh prefix, builds
# examples/embedded against it with find_package(payments CONFIG), and runs it.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR BUILD_TYPE)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "consumer_test.cmake needs -D${var}=...")
    endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix"
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/examples/embedded" -B "${WORK_DIR}/build"
                        -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=${BUILD_TYPE} "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix"
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${WORK_DIR}/build/payments-embedded" COMMAND_ERROR_IS_FATAL ANY)
