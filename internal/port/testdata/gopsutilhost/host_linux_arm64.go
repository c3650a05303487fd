// Created by cgo -godefs - DO NOT EDIT
// cgo -godefs types_linux.go

package host

const sizeOfUtmp = 0x180
