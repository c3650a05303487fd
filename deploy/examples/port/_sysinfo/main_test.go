package main

import "testing"

func TestFacts(t *testing.T) {
	got := facts()
	if got[0] != "kernel: Linux" || got[1] != "bolt roundtrip: 42" {
		t.Fatalf("facts %q", got)
	}
}
