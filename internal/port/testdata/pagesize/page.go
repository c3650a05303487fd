//go:build amd64 || arm64

package pagesize

// PageSize is the size of a memory page.
const PageSize = 4096
