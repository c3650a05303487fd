package asm

// Add is implemented in assembly.
func Add(a, b int) int
