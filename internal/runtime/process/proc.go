package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procRoot is where the proc filesystem is mounted (a variable for tests).
var procRoot = "/proc"

// procStat is what drift needs from /proc/<pid>/stat.
type procStat struct {
	State      byte   // R, S, D, Z, X, …
	PGID       int    // process group
	StartTicks uint64 // start time in clock ticks after boot: with the pid, identifies a process
}

// parseStat parses the content of /proc/<pid>/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	pgid, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("stat: pgrp %q: %v", f[2], err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: starttime %q: %v", f[19], err)
	}
	return procStat{State: f[0][0], PGID: pgid, StartTicks: start}, nil
}

// readStat reads /proc/<pid>/stat; an error means there is no such process.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// running reports whether pid is the process that started at startTicks and
// has not exited (a zombie has exited). A pid reused by another process has
// another start time and is not mistaken for the recorded one.
func running(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	return st.StartTicks == startTicks && st.State != 'Z' && st.State != 'X'
}

// processesUnder returns the live processes whose executable or working
// directory lies under dir (which must be absolute and have no symlinks),
// excluding the calling process.
func processesUnder(dir string) []int {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, link := range []string{"exe", "cwd"} {
			target, err := os.Readlink(filepath.Join(procRoot, e.Name(), link))
			if err != nil {
				continue
			}
			target = strings.TrimSuffix(target, " (deleted)")
			if within(dir, target) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// within reports whether path p is dir or lies under it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// stop ends an instance: the recorded process groups (only those whose
// leader is verified to be the recorded process, so a reused pid is never
// signalled) and every process whose executable or working directory is under instDir
// (which catches members that left the group and a process started just
// before a crash left no record). It sends SIGTERM, waits up to grace, then
// SIGKILL, and waits a little more.
func stop(rec *record, instDir string, grace time.Duration) error {
	if real, err := filepath.EvalSymlinks(instDir); err == nil {
		instDir = real
	}
	targets := func() (groups, pids []int) {
		for _, p := range rec.procs() {
			if running(p.PID, p.StartTicks) {
				groups = append(groups, p.PID)
			}
		}
		return groups, processesUnder(instDir)
	}
	signal := func(sig syscall.Signal) bool {
		groups, pids := targets()
		if len(groups) == 0 && len(pids) == 0 {
			return false
		}
		for _, g := range groups {
			_ = syscall.Kill(-g, sig)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, sig)
		}
		return true
	}
	gone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for {
			groups, pids := targets()
			if len(groups) == 0 && len(pids) == 0 {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !signal(syscall.SIGTERM) || gone(grace) {
		return nil
	}
	signal(syscall.SIGKILL)
	if gone(5 * time.Second) {
		return nil
	}
	groups, pids := targets()
	return fmt.Errorf("processes still running after SIGKILL (groups %v, pids %v)", groups, pids)
}
