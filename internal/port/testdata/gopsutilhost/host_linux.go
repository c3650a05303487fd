package host

// Users reads utmp records of sizeOfUtmp bytes.
func Users() int { return sizeOfUtmp }
