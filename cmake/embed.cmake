# Turns text files into C string constants, each with the PRELUDE file (if
# any) in front: cmake -DOUT=x.h "-DNAMES=a|b" "-DFILES=a.lua|b.lua"
# [-DPRELUDE=common.lua] -P embed.cmake
# The scripts stay readable .lua files in the tree and are compiled into the
# library, so the binaries need nothing from the source tree at run time.
string(REPLACE "|" ";" FILES "${FILES}")
string(REPLACE "|" ";" NAMES "${NAMES}")
set(body "/* Generated from ${PRELUDE} ${FILES} by cmake/embed.cmake; do not edit. */\n")
set(prelude "")
if(PRELUDE)
  file(READ "${PRELUDE}" prelude)
endif()
list(LENGTH FILES n)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  list(GET FILES ${i} f)
  list(GET NAMES ${i} name)
  file(READ "${f}" text)
  string(PREPEND text "${prelude}")
  string(REPLACE "\\" "\\\\" text "${text}")
  string(REPLACE "\"" "\\\"" text "${text}")
  string(REPLACE "\n" "\\n\"\n    \"" text "${text}")
  string(APPEND body "static const char ${name}[] =\n    \"${text}\";\n")
endforeach()
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
