# Install rules: libmpcalloc.so (versioned, with SONAME), libmpcalloc.a, the public header,
# bin/mpcalloc-run, the CMake package (exported targets mpcalloc::mpcalloc, ::mpcalloc_static)
# and mpcalloc.pc. Also writes the build tree's own mpcalloc-run beside the library.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(NOT TARGET mpcalloc)  # sanitizer builds: the sanitizer owns malloc, nothing to install
  return()
endif()

# libmpcalloc.so -> libmpcalloc.so.0 (SONAME) -> libmpcalloc.so.0.1.0, in the build tree too:
# $<TARGET_FILE:mpcalloc> is the real file, and build/release/libmpcalloc.so still works.
set_target_properties(mpcalloc PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
set(MPCALLOC_SONAME libmpcalloc.so.${PROJECT_VERSION_MAJOR})

set(MPCALLOC_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mpcalloc)

set(installed_libs mpcalloc)
if(TARGET mpcalloc_static)
  list(APPEND installed_libs mpcalloc_static)
endif()
install(TARGETS ${installed_libs} EXPORT mpcallocTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/mpcalloc/mpcalloc.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mpcalloc)
install(EXPORT mpcallocTargets NAMESPACE mpcalloc:: DESTINATION ${MPCALLOC_CMAKE_INSTALL_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/mpcallocConfig.cmake.in
  ${PROJECT_BINARY_DIR}/package/mpcallocConfig.cmake
  INSTALL_DESTINATION ${MPCALLOC_CMAKE_INSTALL_DIR}
  PATH_VARS CMAKE_INSTALL_BINDIR CMAKE_INSTALL_LIBDIR)
# 0.x: a new minor version may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/mpcallocConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/package/mpcallocConfig.cmake
              ${PROJECT_BINARY_DIR}/package/mpcallocConfigVersion.cmake
  DESTINATION ${MPCALLOC_CMAKE_INSTALL_DIR})

# mpcalloc.pc: the prefix is only known at install time (cmake --install --prefix P), so the
# file is configured then, from a template whose paths are relative to ${prefix}.
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(MPCALLOC_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(MPCALLOC_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(MPCALLOC_PC_PREFIX "@MPCALLOC_PC_PREFIX@")  # left for the install-time pass
configure_file(${CMAKE_CURRENT_LIST_DIR}/mpcalloc.pc.in ${PROJECT_BINARY_DIR}/package/mpcalloc.pc.in @ONLY)
install(CODE "
  set(MPCALLOC_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/package/mpcalloc.pc.in\"
                 \"${PROJECT_BINARY_DIR}/package/install/mpcalloc.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/package/install/mpcalloc.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# mpcalloc-run finds the library relative to its own location, so an install tree can be
# moved: bin/../lib once installed, the build directory itself for the build tree's copy.
function(mpcalloc_configure_run out_file script_dir lib_dir)
  if(IS_ABSOLUTE "${lib_dir}")
    set(MPCALLOC_RUN_LIBDIR "${lib_dir}")
  else()
    file(RELATIVE_PATH rel "/base/${script_dir}" "/base/${lib_dir}")
    if(rel STREQUAL "")
      set(MPCALLOC_RUN_LIBDIR "\$here")
    else()
      set(MPCALLOC_RUN_LIBDIR "\$here/${rel}")
    endif()
  endif()
  set(MPCALLOC_RUN_LIBNAME ${MPCALLOC_SONAME})
  configure_file(${PROJECT_SOURCE_DIR}/tools/mpcalloc-run.in ${out_file} @ONLY
    FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                     WORLD_READ WORLD_EXECUTE)
endfunction()

if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
  # An absolute bin dir with a relative lib dir: the lib dir is under the configured prefix.
  set(run_libdir "${CMAKE_INSTALL_FULL_LIBDIR}")
else()
  set(run_libdir "${CMAKE_INSTALL_LIBDIR}")
endif()
mpcalloc_configure_run(${PROJECT_BINARY_DIR}/package/install/mpcalloc-run
  "${CMAKE_INSTALL_BINDIR}" "${run_libdir}")
install(PROGRAMS ${PROJECT_BINARY_DIR}/package/install/mpcalloc-run
  DESTINATION ${CMAKE_INSTALL_BINDIR})

get_target_property(lib_out mpcalloc LIBRARY_OUTPUT_DIRECTORY)
if(lib_out)
  file(RELATIVE_PATH lib_out ${PROJECT_BINARY_DIR} ${lib_out})
else()
  set(lib_out .)
endif()
mpcalloc_configure_run(${PROJECT_BINARY_DIR}/mpcalloc-run . ${lib_out})
