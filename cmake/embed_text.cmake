# cmake -DINPUT=<file> -DOUTPUT=<file.cpp> -DSYMBOL=<name> -P embed_text.cmake
# Writes a C++ source defining `extern const char* const adfw::embedded::<SYMBOL>` with the file's
# text, so that generated documents (report.html) carry third-party assets without reading them at
# run time. The text goes into a raw string literal; a file holding the delimiter is refused.
file(READ "${INPUT}" content)
set(delim "adfw_embed")
string(FIND "${content}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "embed_text: ${INPUT} contains the raw-string delimiter ')${delim}\"'")
endif()
# GCC and Clang accept long literals, but split into 16 KiB pieces to stay far below any limit.
string(LENGTH "${content}" length)
set(body "")
set(pos 0)
while(pos LESS length)
  string(SUBSTRING "${content}" ${pos} 16384 piece)
  string(APPEND body "R\"${delim}(${piece})${delim}\"\n")
  math(EXPR pos "${pos} + 16384")
endwhile()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n"
  "namespace adfw::embedded {\nextern const char* const ${SYMBOL};\nconst char* const ${SYMBOL} =\n${body};\n}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
