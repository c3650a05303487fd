package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/edgedrift/drift/internal/port"
)

// Defaults of the run-time checks.
const (
	DefaultRunTimeout  = 10 * time.Second // a smoke run on the host; emulated runs get more (see emulatedLimit)
	DefaultTestTimeout = 10 * time.Minute // one package's test binary under emulation
)

// PortSmoke is one run of a ported command: Binary ("" = every one) with
// Args.
type PortSmoke struct {
	Binary string   `json:"binary,omitempty"`
	Args   []string `json:"args,omitempty"`
}

// PortVerifyInput says what to run and how long a run may take.
type PortVerifyInput struct {
	Source   PortSource    `json:"source"`
	Packages []string      `json:"packages"`
	Binaries []PortBinary  `json:"binaries"`
	Smoke    []PortSmoke   `json:"smoke,omitempty"`   // default: each binary without arguments
	Timeout  time.Duration `json:"timeout,omitempty"` // per host run; default DefaultRunTimeout
}

// PortRunCheck is one command run on the host (twice, to know whether
// its output is deterministic) and under emulation, and the verdict.
type PortRunCheck struct {
	Binary        string   `json:"binary"`
	Args          []string `json:"args,omitempty"`
	Host          port.Run `json:"host"`
	Emulated      port.Run `json:"emulated"`
	Deterministic bool     `json:"deterministic"`
	Same          bool     `json:"same"`
	Verdict       string   `json:"verdict"`
}

// PortVerification is what running the ported program showed.
type PortVerification struct {
	Runs []PortRunCheck `json:"runs,omitempty"`
	// Stubs are dependencies that build differently with cgo off; the
	// runs decide whether that matters.
	Stubs []port.Stub `json:"stubs,omitempty"`
	// HostBuild is why there is no host reference ("" when it built).
	HostBuild string `json:"hostBuild,omitempty"`
}

// PortVerify runs the ported commands under the arch's emulator and the
// host build of the same tree on the host, and compares how they end and
// what they print. It also lists the dependencies that compile a stub
// without cgo, since a cross-build cannot tell those from working code.
func (a *Port) PortVerify(ctx context.Context, in PortVerifyInput) (PortVerification, error) {
	stop := heartbeat(ctx)
	defer stop()
	src := in.Source
	var res PortVerification
	stubs, err := cgoSplit(ctx, src, in.Packages)
	if err != nil {
		return res, err
	}
	res.Stubs = stubs
	hostDir := filepath.Join(filepath.Dir(src.Dir), "bin-host")
	if err := os.RemoveAll(hostDir); err != nil {
		return res, err
	}
	if out, err := goCmd(ctx, src.Dir, nil, append([]string{"build", "-o", hostDir + "/"}, in.Packages...)...); err != nil {
		res.HostBuild = "the host build fails: " + lastLines(out, 10)
	}
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultRunTimeout
	}
	smokes := in.Smoke
	if len(smokes) == 0 {
		smokes = []PortSmoke{{}}
	}
	for _, sm := range smokes {
		for _, b := range in.Binaries {
			if sm.Binary != "" && sm.Binary != b.Name {
				continue
			}
			check := PortRunCheck{Binary: b.Name, Args: sm.Args}
			var host2 port.Run
			if res.HostBuild == "" {
				var took time.Duration
				check.Host, took, err = runProgram(ctx, "", filepath.Join(hostDir, b.Name), sm.Args, timeout)
				if err != nil {
					return res, err
				}
				host2 = check.Host
				if !check.Host.TimedOut {
					if host2, _, err = runProgram(ctx, "", filepath.Join(hostDir, b.Name), sm.Args, timeout); err != nil {
						return res, err
					}
				}
				timeout = emulatedLimit(timeout, took, check.Host.TimedOut)
			}
			if check.Emulated, _, err = runProgram(ctx, emulatorFor(src.Arch), b.Path, sm.Args, timeout); err != nil {
				return res, err
			}
			if res.HostBuild != "" {
				check.Same, check.Verdict = check.Emulated.Exit == 0 && !check.Emulated.TimedOut, "no host reference: emulated "+check.Emulated.String()
			} else {
				check.Same, check.Deterministic, check.Verdict = port.CompareRuns(check.Host, host2, check.Emulated)
			}
			res.Runs = append(res.Runs, check)
		}
	}
	return res, nil
}

// emulatedLimit gives an emulated run the host's limit plus ten times
// what the host run took: a program that ends quickly on the host may be
// ten times slower under qemu, one that kept running need only keep
// running as long.
func emulatedLimit(limit, took time.Duration, kept bool) time.Duration {
	if kept {
		return limit
	}
	return limit + 10*took
}

// emulatorFor is the emulator that runs linux/arch programs here ("" when
// they run natively).
func emulatorFor(arch string) string {
	if arch == goruntime.GOARCH {
		return ""
	}
	return port.Emulator(arch)
}

// runProgram runs bin (under emulator when set) with args in a fresh
// directory that is also its HOME and TMPDIR, with PORT=0 (a server
// listening on :$PORT takes any free port), as ./<name> so that usage lines read the same on host and
// emulator; a run still going after timeout is killed with its process
// group. The output is capped.
func runProgram(ctx context.Context, emulator, bin string, args []string, timeout time.Duration) (port.Run, time.Duration, error) {
	dir, err := os.MkdirTemp("", "drift-run-")
	if err != nil {
		return port.Run{}, 0, err
	}
	defer os.RemoveAll(dir)
	name := "./" + filepath.Base(bin)
	if err := os.Symlink(bin, filepath.Join(dir, filepath.Base(bin))); err != nil {
		return port.Run{}, 0, err
	}
	argv := append([]string{name}, args...)
	if emulator != "" {
		argv = append([]string{emulator}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "TMPDIR="+dir, "PORT=0")
	out := &capped{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	run, took, err := runBounded(ctx, cmd, timeout)
	run.Output = out.String()
	return run, took, err
}

// runBounded runs cmd in its own process group until it exits or timeout
// passes (then the group is killed and the run is TimedOut). Only a
// failure to start, or ctx ending, is an error.
func runBounded(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (port.Run, time.Duration, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return port.Run{}, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var run port.Run
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		run.TimedOut = true
	case <-ctx.Done():
	}
	if run.TimedOut || ctx.Err() != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
	}
	took := time.Since(start)
	run.Exit = cmd.ProcessState.ExitCode()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return run, took, err
	}
	return run, took, ctx.Err()
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }

// cgoSplit lists the packages' dependencies for linux/<arch> with cgo on
// and off and returns those that build differently.
func cgoSplit(ctx context.Context, src PortSource, pkgs []string) ([]port.Stub, error) {
	lists := map[string][]port.Package{}
	for _, cgo := range []string{"1", "0"} {
		env := []string{"GOOS=linux", "GOARCH=" + src.Arch, "CGO_ENABLED=" + cgo}
		out, err := goOutput(ctx, src.Dir, env, append([]string{"list", "-e", "-deps", "-json=" + port.ListFields}, pkgs...)...)
		if err != nil {
			return nil, err
		}
		if lists[cgo], err = port.ReadPackages(strings.NewReader(out)); err != nil {
			return nil, err
		}
	}
	return port.CgoSplit(lists["1"], lists["0"]), nil
}

// PortTestInput names the modules whose tests run under emulation.
type PortTestInput struct {
	Source  PortSource `json:"source"`
	Modules []string   `json:"modules"` // module paths; the port's own first
}

// Statuses of a package's tests.
const (
	TestQueued   = "queued"
	TestRunning  = "running"
	TestPassed   = "passed"
	TestFailed   = "failed"
	TestTimedOut = "timed-out"
	TestSkipped  = "skipped"
)

// PortTestRun is one package's tests under emulation.
type PortTestRun struct {
	Module  string        `json:"module"`
	Package string        `json:"package"`
	Dir     string        `json:"dir,omitempty"`
	Status  string        `json:"status,omitempty"`
	Passed  bool          `json:"passed"`
	Elapsed time.Duration `json:"elapsed,omitempty"` // the test binary's run
	Output  string        `json:"output,omitempty"`  // the end of it, on failure
	Note    string        `json:"note,omitempty"`    // why it was skipped
}

// PortTestPlan is which packages' tests run, which are skipped and why.
type PortTestPlan struct {
	Runs []PortTestRun `json:"runs"` // queued, skipped, or failed to list
	// Cores is how many test binaries the worker runs at once.
	Cores int `json:"cores"`
	// ModFile is a copy of go.mod (and go.sum beside it) the test builds
	// use: test-only dependencies are added there, never to the port.
	ModFile string `json:"modFile"`
}

// PortTestList lists the test packages of the modules for linux/<arch>,
// skipping, with a note, those whose tests need cgo. Test-only
// dependencies are resolved into a copy of go.mod; a module that cannot
// be listed is a failed entry, not an error.
func (a *Port) PortTestList(ctx context.Context, in PortTestInput) (PortTestPlan, error) {
	stop := heartbeat(ctx)
	defer stop()
	src := in.Source
	plan := PortTestPlan{Cores: goruntime.NumCPU(), ModFile: filepath.Join(filepath.Dir(src.Dir), "test", "go.mod")}
	if err := copyModFile(src.Dir, plan.ModFile); err != nil {
		return plan, err
	}
	for _, mod := range in.Modules {
		pattern := mod + "/..."
		if mod == src.Module {
			pattern = "./..."
		}
		lists := map[string][]port.Package{}
		var listErr error
		for _, cgo := range []string{"1", "0"} {
			env := []string{"GOOS=linux", "GOARCH=" + src.Arch, "CGO_ENABLED=" + cgo}
			out, err := goOutput(ctx, src.Dir, env, "list", "-modfile="+plan.ModFile, "-mod=mod", "-e", "-json="+port.ListFields, pattern)
			if err == nil {
				lists[cgo], err = port.ReadPackages(strings.NewReader(out))
			}
			listErr = errors.Join(listErr, err)
		}
		if listErr != nil {
			plan.Runs = append(plan.Runs, PortTestRun{Module: mod, Package: pattern, Status: TestFailed, Output: lastLines(listErr.Error(), 20)})
			continue
		}
		on := map[string]port.Package{}
		for _, p := range lists["1"] {
			on[p.ImportPath] = p
		}
		for _, p := range lists["0"] {
			run := PortTestRun{Module: mod, Package: p.ImportPath, Dir: p.Dir, Status: TestQueued}
			if need, files := port.TestsNeedCgo(on[p.ImportPath], p); need {
				run.Status, run.Note = TestSkipped, "tests need cgo ("+strings.Join(files, ", ")+"): not run with CGO_ENABLED=0"
			} else if len(p.TestGoFiles)+len(p.XTestGoFiles) == 0 {
				continue
			}
			plan.Runs = append(plan.Runs, run)
		}
	}
	// Resolve the test-only dependencies of everything that will run.
	var pkgs []string
	for _, r := range plan.Runs {
		if r.Status == TestQueued {
			pkgs = append(pkgs, r.Package)
		}
	}
	if len(pkgs) > 0 {
		if out, err := goCmd(ctx, src.Dir, targetEnv(src.Arch), append([]string{"list", "-modfile=" + plan.ModFile, "-mod=mod", "-e", "-test", "-deps"}, pkgs...)...); err != nil {
			return plan, fmt.Errorf("resolve test dependencies: %s", lastLines(out, 10))
		}
	}
	return plan, nil
}

// copyModFile copies dir's go.mod and go.sum to modFile and modFile's
// .sum; replace directives stay relative to the module root.
func copyModFile(dir, modFile string) error {
	if err := os.MkdirAll(filepath.Dir(modFile), 0o755); err != nil {
		return err
	}
	for from, to := range map[string]string{"go.mod": modFile, "go.sum": strings.TrimSuffix(modFile, ".mod") + ".sum"} {
		b, err := os.ReadFile(filepath.Join(dir, from))
		if errors.Is(err, os.ErrNotExist) {
			b, err = nil, nil
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// PortTestPackageInput is one package's tests to run.
type PortTestPackageInput struct {
	Source  PortSource    `json:"source"`
	Run     PortTestRun   `json:"run"`
	ModFile string        `json:"modFile,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"` // of the test binary; default DefaultTestTimeout
}

// PortTestPackage compiles one package's tests for linux/<arch> and runs
// the binary under the arch's emulator from the package's directory, as
// `go test -exec` does, killing it at the time limit. The binary gets no
// -test.* flags: test mains of old modules (bolt) parse flags in init and
// reject them. A failure, a timeout included, is the run's status.
func (a *Port) PortTestPackage(ctx context.Context, in PortTestPackageInput) (PortTestRun, error) {
	stop := heartbeat(ctx)
	defer stop()
	src, run := in.Source, in.Run
	binDir, err := os.MkdirTemp(filepath.Dir(src.Dir), "tests-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(binDir)
	bin := filepath.Join(binDir, strings.ReplaceAll(run.Package, "/", "_")+".test")
	args := []string{"test", "-c", "-vet=off", "-o", bin}
	if in.ModFile != "" {
		args = append(args, "-modfile="+in.ModFile, "-mod=mod")
	}
	if out, err := goCmd(ctx, src.Dir, targetEnv(src.Arch), append(args, run.Package)...); err != nil {
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
		run.Status, run.Output = TestFailed, "the tests do not compile for linux/"+src.Arch+":\n"+lastLines(out, 30)
		return run, nil
	}
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultTestTimeout
	}
	argv := []string{bin}
	if e := emulatorFor(src.Arch); e != "" {
		argv = append([]string{e}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = run.Dir
	out := &capped{max: 1 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	res, took, err := runBounded(ctx, cmd, timeout)
	if err != nil {
		return run, err
	}
	run.Elapsed = took.Round(time.Millisecond)
	switch {
	case res.TimedOut:
		run.Status, run.Output = TestTimedOut, fmt.Sprintf("%s: tests still running after %s under %s; killed\n%s", run.Package, timeout, argv[0], lastLines(out.String(), 20))
	case res.Exit != 0:
		run.Status, run.Output = TestFailed, lastLines(out.String(), 30)
	default:
		run.Status, run.Passed = TestPassed, true
	}
	return run, nil
}

// PortTest runs the modules' tests one package after another: the single
// test step of ports started before tests ran per package (kept so their
// histories go on).
func (a *Port) PortTest(ctx context.Context, in PortTestInput) ([]PortTestRun, error) {
	plan, err := a.PortTestList(ctx, in)
	if err != nil {
		return nil, err
	}
	var runs []PortTestRun
	for _, r := range plan.Runs {
		if r.Status == TestQueued {
			if r, err = a.PortTestPackage(ctx, PortTestPackageInput{Source: in.Source, Run: r, ModFile: plan.ModFile}); err != nil {
				return nil, err
			}
		}
		if r.Status != TestSkipped {
			runs = append(runs, r)
		}
	}
	return runs, nil
}
