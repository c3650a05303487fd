package proc

import "syscall"

// sysProcAttr puts a process in its own process group and, should the test
// binary die without stopping it (a timeout panic, a kill), has the kernel
// kill it too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
