package activities

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/temporal"
)

// stepLog appends a step's output to its log file and keeps the tail.
type stepLog struct {
	mu    sync.Mutex
	f     *os.File
	file  string
	tail  []string
	part  string
	pgids string // file recording the running command's process group
}

func openLog(file string) (*stepLog, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "--- %s\n", time.Now().UTC().Format(time.RFC3339))
	return &stepLog{f: f, file: file}, nil
}

func (l *stepLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(l.part+string(b), "\n")
	l.part = lines[len(lines)-1]
	l.tail = append(l.tail, lines[:len(lines)-1]...)
	if len(l.tail) > logTailLines {
		l.tail = l.tail[len(l.tail)-logTailLines:]
	}
	return l.f.Write(b)
}

func (l *stepLog) Close() error { return l.f.Close() }

func (l *stepLog) logs() StepLogs {
	l.mu.Lock()
	defer l.mu.Unlock()
	tail := append([]string(nil), l.tail...)
	if l.part != "" {
		tail = append(tail, l.part)
	}
	return StepLogs{File: l.file, Tail: tail}
}

// failed is a step's non-retryable failure: the message ends with the
// output's tail, and the details carry the step's logs for Progress.
func (l *stepLog) failed(typ, msg string, err error) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v\n%s", msg, err, l.tailText()), typ, err, l.logs())
}

func (l *stepLog) tailText() string { return strings.Join(l.logs().Tail, "\n") }

// run runs a command with its output in the log. The command's process
// group dies with it, and with the worker (Pdeathsig), so a killed worker
// leaves no build running.
func (l *stepLog) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = l, l
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		return err
	}
	if l.pgids != "" {
		os.WriteFile(l.pgids, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		defer os.Remove(l.pgids)
	}
	return cmd.Wait()
}

// runAll runs shell commands in dir one by one, each logged after
// "[tag] $". The first that fails fails the step with errType, its message
// naming what ran; a cancelled context is returned as it is.
func (l *stepLog) runAll(ctx context.Context, dir string, env, commands []string, tag, what, errType string) error {
	for _, c := range commands {
		fmt.Fprintf(l, "[%s] $ %s\n", tag, c)
		if err := l.run(ctx, dir, env, "sh", "-c", c); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return l.failed(errType, fmt.Sprintf("%s: %q failed", what, c), err)
		}
	}
	return nil
}

// reapLeftovers kills what a step's commands left running when their worker
// died: Pdeathsig ends the shell, not what the shell started. Before the
// step runs again, every process still in the recorded process group and
// working in this run's dir is killed.
func (p *Pipeline) reapLeftovers(r RunRef, lg *stepLog) {
	lg.pgids = filepath.Join(p.runDir(r), "running.pgid")
	b, err := os.ReadFile(lg.pgids)
	if err != nil {
		return
	}
	defer os.Remove(lg.pgids)
	pgid, err := strconv.Atoi(string(b))
	if err != nil || pgid <= 1 {
		return
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && strings.HasPrefix(cwd, p.runDir(r)+"/") {
			fmt.Fprintf(lg, "killing %d, left running by an earlier attempt\n", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
