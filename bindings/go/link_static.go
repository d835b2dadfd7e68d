//go:build !joint_external

package joint

// By default the package links the static library that `cargo build --release -p joint`
// leaves in the repository's target/release, with the native libraries Rust's standard
// library needs (`cargo rustc -- --print native-static-libs`). Build with the tag
// joint_external to link another build instead: then CGO_LDFLAGS must name it, for example
// CGO_LDFLAGS="$(pkg-config --libs joint)" or CGO_LDFLAGS="-L/opt/joint/lib -ljoint
// -Wl,-rpath,/opt/joint/lib".

// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libjoint.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
