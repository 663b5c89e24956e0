# Cross build for aarch64 Linux with Debian's g++-aarch64-linux-gnu; executables (tests, test
# discovery) run under qemu-aarch64 user-mode emulation with the target's libraries as root.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(MPCALLOC_TARGET_TRIPLE aarch64-linux-gnu)
set(MPCALLOC_TARGET_SYSROOT /usr/${MPCALLOC_TARGET_TRIPLE})
set(CMAKE_C_COMPILER ${MPCALLOC_TARGET_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${MPCALLOC_TARGET_TRIPLE}-g++)

# Headers and libraries from the target's tree only; programs (python3, the emulator) from
# the host.
set(CMAKE_FIND_ROOT_PATH ${MPCALLOC_TARGET_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -L: the target's dynamic loader and libc are found under the sysroot.
find_program(MPCALLOC_QEMU qemu-aarch64)
if(MPCALLOC_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MPCALLOC_QEMU} -L ${MPCALLOC_TARGET_SYSROOT})
endif()
