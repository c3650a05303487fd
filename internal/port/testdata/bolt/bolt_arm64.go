//go:build arm64
// +build arm64

package bolt

// maxMapSize: the largest mmap this arch allows.
const maxMapSize = 0xFFFFFFFFFFFF // 256TB

// maxAllocSize: the size of array pointers made from the map.
const maxAllocSize = 0x7FFFFFFF

// brokenUnaligned: whether unaligned loads and stores fail here.
var brokenUnaligned = false
