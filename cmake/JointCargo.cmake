# Builds libjoint (the Rust crate) with cargo and exposes the results as imported targets.
#
# Inputs (cache variables, all optional):
#   JOINT_CARGO           the cargo executable (found in PATH, $CARGO_HOME/bin or ~/.cargo/bin)
#   JOINT_CARGO_TARGET_DIR  cargo's target directory. Default: $ENV{CARGO_TARGET_DIR} if set
#                         when CMake is first configured, else <build>/cargo, so that CMake
#                         builds never wait on (or invalidate) the target/ of `cargo test`.
#   JOINT_CARGO_FLAGS     extra arguments for cargo (a CMake list), e.g. "--features;x"
#   JOINT_RUST_TARGET     a Rust target triple to cross-compile for (default: the host)
#
# Outputs:
#   joint_cargo           a custom target that runs cargo and stages the libraries
#   JOINT_STAGE_DIR       <build>/lib, where the staged libraries live:
#                           libjoint.a, libjoint.so.X.Y.Z, libjoint.so.<SOVERSION>, libjoint.so
#   JOINT_SOVERSION       the SONAME suffix: MAJOR.MINOR before 1.0 (no ABI promise across
#                         minor releases: docs/c-api-conventions.md, "Versions"), MAJOR from 1.0 on
#   JOINT_NATIVE_STATIC_LIBS  what the static library needs besides itself (see below)

find_program(JOINT_CARGO cargo
    HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin"
    DOC "cargo, used to build the Rust library")
if(NOT JOINT_CARGO)
    message(FATAL_ERROR "joint: cargo not found; install a Rust toolchain (https://rustup.rs) "
                        "or pass -DJOINT_CARGO=/path/to/cargo")
endif()

if(DEFINED ENV{CARGO_TARGET_DIR} AND NOT "$ENV{CARGO_TARGET_DIR}" STREQUAL "")
    set(_joint_default_target_dir "$ENV{CARGO_TARGET_DIR}")
else()
    set(_joint_default_target_dir "${PROJECT_BINARY_DIR}/cargo")
endif()
set(JOINT_CARGO_TARGET_DIR "${_joint_default_target_dir}" CACHE PATH
    "cargo --target-dir for the Rust library (default: $CARGO_TARGET_DIR, else inside the build dir)")
set(JOINT_CARGO_FLAGS "" CACHE STRING "Extra arguments passed to cargo (a ;-separated list)")
set(JOINT_RUST_TARGET "" CACHE STRING "Rust target triple (empty: the host)")

# Build type -> cargo profile. Debug uses the dev profile; everything else (Release,
# RelWithDebInfo, MinSizeRel, unset) uses release, which keeps debug info (Cargo.toml sets
# debug = 1). Multi-config generators get the release profile for every configuration.
get_property(_joint_multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
string(TOUPPER "${CMAKE_BUILD_TYPE}" _joint_build_type)
if(NOT _joint_multi_config AND _joint_build_type STREQUAL "DEBUG")
    set(_joint_profile_args "")
    set(_joint_profile_dir "debug")
else()
    set(_joint_profile_args "--release")
    set(_joint_profile_dir "release")
endif()

set(_joint_cargo_out "${JOINT_CARGO_TARGET_DIR}")
set(_joint_target_args "")
if(JOINT_RUST_TARGET)
    set(_joint_target_args --target "${JOINT_RUST_TARGET}")
    string(APPEND _joint_cargo_out "/${JOINT_RUST_TARGET}")
endif()
string(APPEND _joint_cargo_out "/${_joint_profile_dir}")

# SONAME. Before 1.0 every minor release may break the ABI, so the SONAME carries the minor
# version (libjoint.so.0.1); from 1.0 on only the major (libjoint.so.1).
if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(JOINT_SOVERSION "${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}")
else()
    set(JOINT_SOVERSION "${PROJECT_VERSION_MAJOR}")
endif()
set(JOINT_SONAME "libjoint.so.${JOINT_SOVERSION}")

# Libraries the static library needs on Linux, as reported by
#   cargo rustc --release -p joint --lib --crate-type staticlib -- --print native-static-libs
# (rustc 1.95, x86_64-unknown-linux-gnu): -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
# libc is implicit; pthread comes through Threads::Threads. Re-check the list when the Rust
# toolchain or the crate's dependencies change.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(JOINT_NATIVE_STATIC_LIBS Threads::Threads dl m rt util gcc_s)
    set(JOINT_NATIVE_STATIC_LIBS_PC "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")
else()
    # Not verified on other systems: the generic minimum for Rust's std on Unix.
    set(JOINT_NATIVE_STATIC_LIBS Threads::Threads ${CMAKE_DL_LIBS} m)
    set(JOINT_NATIVE_STATIC_LIBS_PC "-lpthread -lm")
endif()

set(JOINT_STAGE_DIR "${PROJECT_BINARY_DIR}/lib")
set(JOINT_STATIC_LIB "${JOINT_STAGE_DIR}/libjoint.a")
set(JOINT_SHARED_REAL "${JOINT_STAGE_DIR}/libjoint.so.${PROJECT_VERSION}")
set(JOINT_SHARED_SONAME_LINK "${JOINT_STAGE_DIR}/${JOINT_SONAME}")
set(JOINT_SHARED_DEV_LINK "${JOINT_STAGE_DIR}/libjoint.so")

# cargo reruns are cheap (it has its own change tracking); these dependencies only decide
# when ninja/make invoke it at all.
file(GLOB_RECURSE _joint_rust_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/src/*.rs")
set(_joint_cargo_inputs ${_joint_rust_sources}
    "${PROJECT_SOURCE_DIR}/Cargo.toml" "${PROJECT_SOURCE_DIR}/Cargo.lock")
if(EXISTS "${PROJECT_SOURCE_DIR}/build.rs")
    list(APPEND _joint_cargo_inputs "${PROJECT_SOURCE_DIR}/build.rs")
endif()

# `cargo rustc` is `cargo build` plus arguments for the last rustc invocation only: the
# SONAME link argument reaches libjoint's own link step and nothing else, so the crate's
# dependencies are not rebuilt (as a RUSTFLAGS change would force) and the user's RUSTFLAGS /
# .cargo/config flags still apply unchanged. --crate-type limits the output to the two C
# artifacts (no rlib is needed here).
add_custom_command(
    OUTPUT "${JOINT_STATIC_LIB}" "${JOINT_SHARED_REAL}" "${JOINT_SHARED_SONAME_LINK}" "${JOINT_SHARED_DEV_LINK}"
    COMMAND "${JOINT_CARGO}" rustc ${_joint_profile_args} --locked -p joint --lib
            --crate-type cdylib,staticlib
            --target-dir "${JOINT_CARGO_TARGET_DIR}" ${_joint_target_args} ${JOINT_CARGO_FLAGS}
            -- -C "link-arg=-Wl,-soname,${JOINT_SONAME}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${JOINT_STAGE_DIR}"
    COMMAND "${CMAKE_COMMAND}" -E copy "${_joint_cargo_out}/libjoint.a" "${JOINT_STATIC_LIB}"
    COMMAND "${CMAKE_COMMAND}" -E copy "${_joint_cargo_out}/libjoint.so" "${JOINT_SHARED_REAL}"
    COMMAND "${CMAKE_COMMAND}" -E create_symlink "libjoint.so.${PROJECT_VERSION}" "${JOINT_SHARED_SONAME_LINK}"
    COMMAND "${CMAKE_COMMAND}" -E create_symlink "${JOINT_SONAME}" "${JOINT_SHARED_DEV_LINK}"
    DEPENDS ${_joint_cargo_inputs}
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    COMMENT "cargo: building libjoint (${_joint_profile_dir}) in ${JOINT_CARGO_TARGET_DIR}"
    USES_TERMINAL
    VERBATIM)
add_custom_target(joint_cargo ALL
    DEPENDS "${JOINT_STATIC_LIB}" "${JOINT_SHARED_REAL}" "${JOINT_SHARED_SONAME_LINK}" "${JOINT_SHARED_DEV_LINK}")
