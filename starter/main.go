// Command drift is drift's CLI: it runs the development stack, inspects
// topologies and starts, signals and queries drift's workflows.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/edgedrift/drift/internal/runtime/proxy"
)

func main() {
	proxy.Main() // when started as a stable endpoint's proxy
	if err := newRootCommand().Execute(); err != nil {
		var exit exitError
		if !errors.As(err, &exit) {
			fmt.Fprintln(os.Stderr, "drift:", err)
		}
		os.Exit(1)
	}
}

// exitError ends the command with status 1 after it has already said why.
type exitError struct{ error }
