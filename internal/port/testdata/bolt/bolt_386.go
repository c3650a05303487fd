package bolt

const maxMapSize = 0x7FFFFFFF

const maxAllocSize = 0xFFFFFFF

var brokenUnaligned = false
