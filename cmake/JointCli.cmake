# Builds the `joint` command (the joint-cli crate in cli/) with cargo, and renders its manual
# pages with it; CMakeLists.txt installs both.
# Included from CMakeLists.txt after JointCargo.cmake, whose cargo settings it reuses
# (JOINT_CARGO, JOINT_CARGO_TARGET_DIR, JOINT_CARGO_FLAGS, JOINT_RUST_TARGET, the profile).
#
# Outputs:
#   joint_cli        a custom target that runs cargo and stages the binary
#   JOINT_CLI_BIN    <build>/bin/joint, the staged binary
#   JOINT_MAN_DIR    <build>/man/man1: joint.1 and a joint-COMMAND.1 per command, rendered by
#                    the built binary (`joint man --dir`), so the pages always match its --help;
#                    unset when cross-compiling (the binary cannot run on the build machine)

set(JOINT_CLI_BIN "${PROJECT_BINARY_DIR}/bin/joint")

file(GLOB_RECURSE _joint_cli_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/cli/src/*.rs")
set(_joint_cli_inputs ${_joint_cli_sources} ${_joint_cargo_inputs} "${PROJECT_SOURCE_DIR}/cli/Cargo.toml")

add_custom_command(
    OUTPUT "${JOINT_CLI_BIN}"
    COMMAND "${JOINT_CARGO}" build ${_joint_profile_args} --locked -p joint-cli --bin joint
            --target-dir "${JOINT_CARGO_TARGET_DIR}" ${_joint_target_args} ${JOINT_CARGO_FLAGS}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${PROJECT_BINARY_DIR}/bin"
    COMMAND "${CMAKE_COMMAND}" -E copy "${_joint_cargo_out}/joint" "${JOINT_CLI_BIN}"
    DEPENDS ${_joint_cli_inputs}
    WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
    COMMENT "cargo: building the joint command (${_joint_profile_dir}) in ${JOINT_CARGO_TARGET_DIR}"
    USES_TERMINAL
    VERBATIM)
set(_joint_cli_outputs "${JOINT_CLI_BIN}")
if(NOT CMAKE_CROSSCOMPILING)
    set(JOINT_MAN_DIR "${PROJECT_BINARY_DIR}/man/man1")
    set(_joint_man_stamp "${PROJECT_BINARY_DIR}/man/man1.stamp")
    add_custom_command(
        OUTPUT "${_joint_man_stamp}"
        COMMAND "${CMAKE_COMMAND}" -E rm -rf "${JOINT_MAN_DIR}"
        COMMAND "${CMAKE_COMMAND}" -E make_directory "${JOINT_MAN_DIR}"
        COMMAND "${JOINT_CLI_BIN}" man --dir "${JOINT_MAN_DIR}"
        COMMAND "${CMAKE_COMMAND}" -E touch "${_joint_man_stamp}"
        DEPENDS "${JOINT_CLI_BIN}"
        COMMENT "joint man: rendering the manual pages into ${JOINT_MAN_DIR}"
        VERBATIM)
    list(APPEND _joint_cli_outputs "${_joint_man_stamp}")
endif()
add_custom_target(joint_cli ALL DEPENDS ${_joint_cli_outputs})
