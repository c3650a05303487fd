//go:build 386 || amd64 || arm || arm64 || mipsle || mips64le || ppc64le || riscv || riscv64
// +build 386 amd64 arm arm64 mipsle mips64le ppc64le riscv riscv64

package ubinary

import "encoding/binary"

// NativeEndian is $GOARCH's byte order.
var NativeEndian = binary.LittleEndian
