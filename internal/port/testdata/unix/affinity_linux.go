package unix

// CPUSet is a set of CPUs.
type CPUSet [_CPU_SETSIZE / 64]uint64

// Header returns an empty control message header.
func Header() Cmsghdr { return Cmsghdr{} }
