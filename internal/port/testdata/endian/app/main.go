package main

import (
	"fmt"

	bin "example.com/dep/ubinary"
)

func main() { fmt.Println(bin.NativeEndian, bin.Missing) }
