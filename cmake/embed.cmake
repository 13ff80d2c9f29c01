# Turns a text file into a C++ header holding it as a raw string literal.
file(READ ${IN} content)
string(FIND "${content}" ")embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter")
endif()
file(WRITE ${OUT}.tmp "#pragma once\n// Generated from ${IN}; do not edit.\nnamespace okta_sidecar {\ninline constexpr const char ${NAME}[] = R\"embed(${content})embed\";\n}\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
