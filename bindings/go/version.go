package joint

// #include "bridge.h"
import "C"

// Version is the version of the linked C library, such as "0.2.0".
func Version() string { return C.GoString(C.joint_version()) }

// HeaderVersion is the version of include/joint.h this package was compiled against.
const HeaderVersion = C.JOINT_VERSION_STRING
