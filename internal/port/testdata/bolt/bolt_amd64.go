package bolt

// Limits of a 64-bit address space.
const maxMapSize = 0xFFFFFFFFFFFF

const maxAllocSize = 0x7FFFFFFF

var brokenUnaligned = false
