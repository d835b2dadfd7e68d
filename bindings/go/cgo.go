package joint

// #cgo CFLAGS: -I${SRCDIR}/../../include -O2
// #include "bridge.h"
import "C"
