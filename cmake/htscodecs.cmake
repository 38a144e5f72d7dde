# htscodecs (Debian libhtscodecs-dev; no pkg-config file): the rANS coder of entropy-coded code
# parts (lib/src/codec/rans.cpp). Defines the imported target mqkv::htscodecs. Included by the
# build and by the installed package config (a static libmqkv needs it at link time).
if(NOT TARGET mqkv::htscodecs)
  find_path(MQKV_HTSCODECS_INCLUDE_DIR htscodecs/rANS_static4x16.h)
  find_library(MQKV_HTSCODECS_LIBRARY htscodecs)
  if(NOT MQKV_HTSCODECS_INCLUDE_DIR OR NOT MQKV_HTSCODECS_LIBRARY)
    message(FATAL_ERROR "htscodecs not found (Debian: libhtscodecs-dev; scripts/setup-deps.sh installs it)")
  endif()
  add_library(mqkv::htscodecs UNKNOWN IMPORTED)
  set_target_properties(mqkv::htscodecs PROPERTIES IMPORTED_LOCATION "${MQKV_HTSCODECS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${MQKV_HTSCODECS_INCLUDE_DIR}")
endif()
