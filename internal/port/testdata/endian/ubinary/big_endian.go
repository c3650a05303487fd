//go:build mips || mips64 || ppc64 || s390x
// +build mips mips64 ppc64 s390x

package ubinary

import "encoding/binary"

// NativeEndian is $GOARCH's byte order.
var NativeEndian = binary.BigEndian
