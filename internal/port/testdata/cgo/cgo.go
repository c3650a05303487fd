package cgo

// int two(void) { return 2; }
import "C"

// Two comes from C.
func Two() int { return int(C.two()) }
