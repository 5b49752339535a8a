# Fast rebuilds on small machines: ccache, lld, and a link pool so two links of
# LibTorch-sized binaries never run at once next to compiles.
find_program(ADFW_CCACHE ccache)
if(ADFW_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # ccache only caches compiles that use a precompiled header when told to ignore the
  # header's time stamps and defines; the settings must be in the compiler's environment at
  # build time, so they travel with the launcher. base_dir lets two checkouts share hits.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}/.." ${ADFW_CCACHE})
  message(STATUS "adfw: using ccache (${ADFW_CCACHE})")
endif()

set(ADFW_LINKER_FLAGS "")
find_program(ADFW_LLD ld.lld)
if(ADFW_LLD)
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fuse-ld=lld")
  check_cxx_source_compiles("int main(){return 0;}" ADFW_HAS_LLD)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(ADFW_HAS_LLD)
    set(ADFW_LINKER_FLAGS "-fuse-ld=lld")
    message(STATUS "adfw: linking with lld")
  endif()
endif()

set_property(GLOBAL APPEND PROPERTY JOB_POOLS adfw_link=1)

function(adfw_fast_build target)
  if(ADFW_LINKER_FLAGS)
    target_link_options(${target} PRIVATE ${ADFW_LINKER_FLAGS})
  endif()
  set_property(TARGET ${target} PROPERTY JOB_POOL_LINK adfw_link)
endfunction()
