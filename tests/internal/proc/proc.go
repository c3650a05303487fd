// Package proc runs the server processes of drift's test harnesses (tests/kube,
// tests/production/temporalpg): each in its own process group with its output
// in a log file, stopped by signal with a deadline, and checked to leave
// nothing behind.
package proc

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Proc is one started process, the leader of its own process group so that
// stopping it also stops anything it started.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string        // stdout and stderr, appended across restarts
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
}

// How long a process gets to exit after its stop signal before SIGKILL.
const (
	TermGrace = 10 * time.Second
	killGrace = 5 * time.Second
)

// Start runs bin with args and env in dir, logging to dir/<name>.log.
func Start(dir, name, bin string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	return StartCmd(filepath.Join(dir, name+".log"), name, cmd)
}

// StartCmd starts cmd (whose Dir, Env and SysProcAttr.Credential the caller
// may set) with its output appended to logPath, in its own process group.
func StartCmd(logPath, name string, cmd *exec.Cmd) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "# %s %s\n", cmd.Path, strings.Join(cmd.Args[1:], " "))
	cmd.Stdin = nil
	cmd.Stdout = f
	cmd.Stderr = f
	attr := sysProcAttr()
	if cmd.SysProcAttr != nil {
		attr.Credential = cmd.SysProcAttr.Credential
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Run runs cmd (made with exec.CommandContext) to completion in its own
// process group, its output appended to logPath (none if ""). When ctx ends
// the whole group is killed, and Run returns only once no member of the
// group is left: a tool's children (initdb's postgres, …) do not outlive it.
// A failure's error carries the end of the log.
func Run(cmd *exec.Cmd, logPath string) error {
	attr := sysProcAttr()
	if cmd.SysProcAttr != nil {
		attr.Credential = cmd.SysProcAttr.Credential
	}
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killGrace
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(f, "# %s %s\n", cmd.Path, strings.Join(cmd.Args[1:], " "))
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	err := cmd.Wait()
	pgid := cmd.Process.Pid
	deadline := time.Now().Add(killGrace)
	for GroupAlive(pgid) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			return errors.Join(err, fmt.Errorf("%s: processes of group %d still running after SIGKILL", cmd.Path, pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil && logPath != "" {
		err = fmt.Errorf("%s: %w\n%s", filepath.Base(cmd.Path), err, FileTail(logPath, 20))
	}
	return err
}

// FreePortsBelow returns n distinct free TCP ports on 127.0.0.1 below max
// (for programs that store a port in 16 signed bits), from 10000 up.
func FreePortsBelow(n, max int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	start := 10000 + rand.IntN(max-10000)
	for i := 0; i < max-10000 && len(ports) < n; i++ {
		port := 10000 + (start-10000+i)%(max-10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("only %d free ports below %d", len(ports), max)
	}
	return ports, nil
}

// Pid is the process's id, also its process group's.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group; see StopWith.
func (p *Proc) Stop() error { return p.StopWith(syscall.SIGTERM) }

// StopWith sends sig to the process group, then SIGKILL after TermGrace, and
// reports an error if the process or any member of its group survives.
func (p *Proc) StopWith(sig syscall.Signal) error {
	pgid := p.Pid()
	if ok, _ := p.Exited(); !ok {
		_ = syscall.Kill(-pgid, sig)
		select {
		case <-p.done:
		case <-time.After(TermGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(killGrace):
				return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.Name, pgid)
			}
		}
	}
	// The leader is gone; make sure nothing else in its group lives on.
	if GroupAlive(pgid) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		deadline := time.Now().Add(killGrace)
		for GroupAlive(pgid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: processes of group %d still running after SIGKILL", p.Name, pgid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// GroupAlive reports whether any process of group pgid lives.
func GroupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LogTail returns the last n lines of the process's log.
func (p *Proc) LogTail(n int) string { return FileTail(p.LogPath, n) }

// FileTail returns the last n lines of a (possibly large) file.
func FileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	// Logs can be large (an apiserver is chatty); read only the end.
	const max = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return Tail(string(b), n)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Env is the environment of a harness's processes: the test's, with HOME
// set to home (so nothing reads or writes the user's dot files), no proxy
// settings (everything is on loopback) and no variable named in drop, then
// extra (KEY=VALUE).
func Env(home string, drop []string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		if slices.Contains(drop, k) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "NO_PROXY=127.0.0.1,localhost")
	return append(env, extra...)
}

// CacheRoot is the root of drift's build cache: $DRIFT_CACHE, else
// $HOME/.cache/drift. The build scripts use the same rule.
func CacheRoot() string {
	if d := os.Getenv("DRIFT_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "drift")
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// In lists the live processes that point into dir: their working
// directory, root (a container's rootfs), executable or any command-line
// argument lies in it. A harness
// that keeps every file of its processes under one dir proves with it that
// nothing it started is left.
func In(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	inDir := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || pid == fmt.Sprint(self) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		hit := false
		for _, l := range []string{"cwd", "root", "exe"} {
			if t, err := os.Readlink(filepath.Join("/proc", pid, l)); err == nil && inDir(t) {
				hit = true
			}
		}
		for _, a := range args {
			// flags such as --data-dir=/x/y or -D /x/y
			if _, v, ok := strings.Cut(a, "="); ok && inDir(v) || inDir(a) {
				hit = true
			}
		}
		if hit {
			out = append(out, pid+" "+strings.Join(args, " "))
		}
	}
	return out, nil
}
