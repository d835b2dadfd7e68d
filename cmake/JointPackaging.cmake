# CPack: a Debian package of the installed tree (library, headers, CMake package, pkg-config
# file and, with JOINT_BUILD_CLI, the joint command).
#
#   cmake -S . -B build && cmake --build build      # CPack installs under /usr regardless of the prefix
#   (cd build && cpack -G DEB)      # build/joint_<version>_<arch>.deb
#   sudo apt-get install ./build/joint_*.deb
#
# One package for everything (no -dev split): joint is small and its users build against it.
# Dependencies come from dpkg-shlibdeps (package dpkg-dev), so the libc6 minimum is the one
# the binaries really need.

install(FILES LICENSE-MIT LICENSE-APACHE README.md CHANGELOG.md
    DESTINATION "${CMAKE_INSTALL_DOCDIR}")

set(CPACK_PACKAGE_NAME joint)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "the joint developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION "libjoint (shared and static), its C header and header-only \
C++17 wrapper, the CMake package (find_package(joint)), the pkg-config file, and the joint \
command-line tool.")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE-MIT")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # joint_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "the joint developers <joint@localhost>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)

include(CPack)
