# Run at build time (cmake -P): writes the ```cpp block that follows the line
# "<!-- example: NAME -->" in INPUT (a Markdown file) to OUTPUT, so that the
# README's example is compiled and run exactly as written.
cmake_minimum_required(VERSION 3.25)
foreach(var INPUT OUTPUT NAME)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "extract_example.cmake needs -D${var}=...")
    endif()
endforeach()

file(READ "${INPUT}" text)
set(marker "<!-- example: ${NAME} -->\n```cpp\n")
string(FIND "${text}" "${marker}" at)
if(at EQUAL -1)
    message(FATAL_ERROR "${INPUT}: no ```cpp block right after <!-- example: ${NAME} -->")
endif()
string(LENGTH "${marker}" marker_length)
math(EXPR begin "${at} + ${marker_length}")
string(SUBSTRING "${text}" ${begin} -1 rest)
string(FIND "${rest}" "\n```\n" end)
if(end EQUAL -1)
    message(FATAL_ERROR "${INPUT}: the block after <!-- example: ${NAME} --> is not closed")
endif()
math(EXPR end "${end} + 1")
string(SUBSTRING "${rest}" 0 ${end} code)
# Rewritten only when it changed, so that an unrelated README edit rebuilds nothing.
file(CONFIGURE OUTPUT "${OUTPUT}" CONTENT "${code}")
