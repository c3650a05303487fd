package bolt

// DB is a memory-mapped file.
type DB struct {
	data *[maxMapSize]byte
}

// Limit is how far a map may grow.
func Limit() int { return maxMapSize }

// Aligned reports whether unaligned access is safe.
func Aligned() bool { return !brokenUnaligned && maxAllocSize > 0 }
