package pagesize

// Pages is how many pages n bytes take.
func Pages(n int) int { return (n + PageSize - 1) / PageSize }
