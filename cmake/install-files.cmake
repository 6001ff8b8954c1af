# Installs the files whose contents or places depend on the install prefix,
# which is known only now (cmake --install --prefix P, or cpack's /usr): the
# systemd units (ExecStart, EnvironmentFile), the configuration files (/etc
# for the /usr prefix, as Debian's; P/etc otherwise) and hostreg-host.pc.
# Run by install(SCRIPT) with SRC, VERSION and LIBDIR (relative) set.
cmake_policy(PUSH)
cmake_policy(SET CMP0053 NEW) # "@NAME@" below is text, not a variable
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(sysconfdir "/etc")
else()
  set(sysconfdir "${prefix}/etc")
endif()
set(dest "$ENV{DESTDIR}")

function(put template out)
  file(READ "${template}" text)
  string(REPLACE "@BINDIR@" "${prefix}/bin" text "${text}")
  string(REPLACE "@SYSCONFDIR@" "${sysconfdir}" text "${text}")
  string(REPLACE "@PREFIX@" "${prefix}" text "${text}")
  string(REPLACE "@LIBDIR@" "${prefix}/${LIBDIR}" text "${text}")
  string(REPLACE "@INCLUDEDIR@" "${prefix}/include" text "${text}")
  string(REPLACE "@VERSION@" "${VERSION}" text "${text}")
  get_filename_component(dir "${dest}${out}" DIRECTORY)
  file(MAKE_DIRECTORY "${dir}")
  file(WRITE "${dest}${out}" "${text}")
  message(STATUS "Installing: ${dest}${out}")
endfunction()

foreach(unit hostregd hostreg-gateway)
  put("${SRC}/packaging/systemd/${unit}.service.in" "${prefix}/lib/systemd/system/${unit}.service")
  # A configuration file an operator edited stays as it is.
  if(NOT EXISTS "${dest}${sysconfdir}/hostreg/${unit}.env")
    put("${SRC}/packaging/${unit}.env" "${sysconfdir}/hostreg/${unit}.env")
    # It may hold secrets (the .deb's postinst gives it to group hostreg).
    file(CHMOD "${dest}${sysconfdir}/hostreg/${unit}.env"
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
  endif()
endforeach()
put("${SRC}/packaging/hostreg-host.pc.in" "${prefix}/${LIBDIR}/pkgconfig/hostreg-host.pc")
cmake_policy(POP)
