# Cross build for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu, against the arm64 sysroot
# that scripts/setup-arm64.sh makes ($MQKV_CACHE/arm64-root), tests run under qemu-aarch64.
#   cmake -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DMQKV_ARM64_SYSROOT=$HOME/.cache/mqkv/arm64-root
# tests/arm64/run.sh does all of it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT MQKV_ARM64_SYSROOT)
  if(DEFINED ENV{MQKV_CACHE})
    set(MQKV_ARM64_SYSROOT "$ENV{MQKV_CACHE}/arm64-root")
  else()
    set(MQKV_ARM64_SYSROOT "$ENV{HOME}/.cache/mqkv/arm64-root")
  endif()
endif()
if(NOT EXISTS "${MQKV_ARM64_SYSROOT}/.mqkv-sysroot")
  message(FATAL_ERROR "no arm64 sysroot at ${MQKV_ARM64_SYSROOT}: run scripts/setup-arm64.sh")
endif()
set(CMAKE_SYSROOT "${MQKV_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${MQKV_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)  # build tools (flatc) are the host's
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${MQKV_ARM64_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR} "${MQKV_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${MQKV_ARM64_SYSROOT}/usr/share/pkgconfig")

# Test programs (and gtest_discover_tests) run under user-mode QEMU with the sysroot's loader
# and libraries. QEMU's timings mean nothing: this build is for correctness only.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L "${MQKV_ARM64_SYSROOT}")
