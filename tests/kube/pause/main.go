// Command pause is the sandbox ("pause") container of the kube harness's real
// node: it holds a pod's namespaces until it is told to stop. No image can be
// pulled here, so the harness builds this one (static, FROM scratch) and
// imports it as containerd's sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 it gets only the signals it handles.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
