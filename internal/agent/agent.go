// Package agent is the VM side of software installs: it registers the VM
// (name, labels, what it has) with its tenant's inventory, asks the tenant
// gateway for its instructions, and for each one checks the package's
// signature against its trusted keys, downloads it, checks its sha256,
// unpacks it beside the live version, runs the install hook and health
// check, switches to it, and reports the result back through the gateway.
// Uninstalls remove exactly what the agent installed.
package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

// Agent installs what the gateway says into Prefix.
type Agent struct {
	Gateway string // e.g. http://169.254.169.254:8080
	Prefix  string // packages go to Prefix/<name>/<version>, live one at Prefix/<name>/current
	// Trusted are the keys whose signature a package needs (the
	// repository's, or publishers'); without one the agent does not start.
	Trusted []ed25519.PublicKey
	// Name and Labels register the VM in its tenant's inventory on first
	// contact ("" Name: no registration).
	Name   string
	Labels map[string]string
	// Source is the local address connections start from ("" = any).
	Source string
	// AllowLinkLocal lets a gateway on a link-local address be used from the
	// host's namespace: only for a real VM, whose link-local range is its
	// own. Inside a network namespace it is not needed.
	AllowLinkLocal bool
	Logger         *slog.Logger
	http           *http.Client
	registered     bool
}

// Bounds of a package's scripts.
const (
	hookTimeout   = 5 * time.Minute
	healthTimeout = time.Minute
)

// ErrNoTrust: the agent was given no key to check packages with.
var ErrNoTrust = errors.New("agent: no trusted key: give --trust FILE with the repository's public key (drift dev writes <data-dir>/repo-signing.key.pub) or a publisher's")

// Check validates the configuration and refuses a link-local gateway in the
// host's own namespace before any traffic is sent.
func (a *Agent) Check() error {
	u, err := url.Parse(a.Gateway)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--gateway %q: want http://host:port", a.Gateway)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	if err := netns.CheckAddr(host, a.AllowLinkLocal); err != nil {
		return err
	}
	if a.Prefix == "" {
		return errors.New("agent: --prefix is required")
	}
	if len(a.Trusted) == 0 {
		return ErrNoTrust
	}
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	// Every connection is checked again on its resolved address.
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: netns.Control(a.AllowLinkLocal)}
	if a.Source != "" {
		ip := net.ParseIP(a.Source)
		if ip == nil {
			return fmt.Errorf("--source %q is not an IP address", a.Source)
		}
		dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
	a.http = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DialContext: dialer.DialContext}}
	return os.MkdirAll(a.stateDir(), 0o755)
}

func (a *Agent) stateDir() string { return filepath.Join(a.Prefix, ".drift") }

// Run polls for instructions every interval until ctx ends.
func (a *Agent) Run(ctx context.Context, every time.Duration) error {
	if err := a.Check(); err != nil {
		return err
	}
	for {
		if _, err := a.Once(ctx); err != nil {
			a.Logger.Warn("agent: round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// Once handles every open instruction and returns how many it reported.
func (a *Agent) Once(ctx context.Context) (int, error) {
	if a.http == nil {
		if err := a.Check(); err != nil {
			return 0, err
		}
	}
	if a.Name != "" && !a.registered {
		err := a.register(ctx)
		var se *repo.StatusError
		switch {
		case errors.As(err, &se) && (se.Status == http.StatusConflict || se.Status == http.StatusBadRequest):
			// Only the admin can fix it (drift inventory rm / a new name):
			// asking again each round would not.
			a.registered = true
			a.Logger.Error("agent: registration refused; installs still run for this address", "name", a.Name, "err", err)
		case err != nil:
			a.Logger.Warn("agent: not registered yet", "name", a.Name, "err", err)
		}
	}
	var ins []repo.Instruction
	if err := a.call(ctx, http.MethodGet, "/v1/instructions", nil, &ins); err != nil {
		return 0, err
	}
	n := 0
	for _, in := range ins {
		rep, done := a.recorded(in.ID)
		if !done {
			rep = a.Install(ctx, in)
			a.record(rep)
		}
		if err := a.report(ctx, rep); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// register tells the tenant's inventory who this VM is and what it has.
func (a *Agent) register(ctx context.Context) error {
	have, err := a.Inventory()
	if err != nil {
		return err
	}
	if err := a.call(ctx, http.MethodPost, "/v1/register", repo.Registration{Name: a.Name, Labels: a.Labels, Installed: have}, nil); err != nil {
		return err
	}
	a.registered = true
	a.Logger.Info("registered", "name", a.Name, "labels", a.Labels, "packages", len(have))
	return nil
}

// Install carries out one instruction (install, update or uninstall);
// every failure is in the report, and a failed install or update leaves
// the previous version live and nothing of the new one.
func (a *Agent) Install(ctx context.Context, in repo.Instruction) repo.Report {
	rep := repo.Report{InstructionID: in.ID, Action: in.Action}
	if rep.Action == "" {
		rep.Action = repo.ActionInstall
	}
	p := in.Package
	var err error
	transient := false
	switch rep.Action {
	case repo.ActionUninstall:
		err = a.uninstall(p.Ref, &rep)
	case repo.ActionInstall, repo.ActionUpdate:
		transient, err = a.install(ctx, in, &rep)
	default:
		err = fmt.Errorf("unknown action %q", in.Action)
	}
	if m, lerr := a.load(p.Name); lerr == nil {
		rep.Current = m.Current
	}
	rep.Installed, _ = a.Inventory()
	if err != nil {
		rep.Transient, rep.Error = transient, err.Error()
		a.Logger.Warn(rep.Action+" failed", "instruction", in.ID, "package", p.Ref.String(), "err", err)
		return rep
	}
	rep.OK = true
	a.Logger.Info(rep.Action+" done", "instruction", in.ID, "package", p.Ref.String(), "current", rep.Current, "files", rep.Files, "removed", rep.Removed)
	return rep
}

// install puts p's version beside the live one and switches to it once its
// hook and health check pass; an update then removes the other versions
// (in place), or removed them first (replace). It says whether a failure
// is transient.
func (a *Agent) install(ctx context.Context, in repo.Instruction, rep *repo.Report) (bool, error) {
	p := in.Package
	if err := p.Validate(); err != nil {
		return false, err
	}
	if p.Version == currentLink {
		return false, fmt.Errorf("version %q is the name of the live-version link; nothing installed", p.Version)
	}
	// Before anything is fetched: only what a trusted key signed.
	if err := repo.Verify(p, a.Trusted); err != nil {
		return false, fmt.Errorf("refused: %w; nothing installed", err)
	}
	m, err := a.load(p.Name)
	if err != nil {
		return false, err
	}
	if have, ok := m.Versions[p.Version]; ok && m.Current == p.Version && have.SHA256 == p.SHA256 {
		rep.SHA256, rep.Dir = p.SHA256, a.versionDir(p.Name, p.Version)
		return false, a.dropOthers(in, &m, rep) // already live: an update still drops the rest
	}
	blob, sum, err := a.download(ctx, p)
	if blob != "" {
		defer os.Remove(blob)
	}
	if err != nil {
		var se *repo.StatusError
		return !errors.As(err, &se) || se.Status >= 500 || se.Status == http.StatusTooManyRequests, err
	}
	rep.SHA256 = sum
	if sum != p.SHA256 {
		return true, fmt.Errorf("sha256 mismatch: the signed entry says %s, download is %s; nothing installed", p.SHA256, sum)
	}
	if in.Action == repo.ActionUpdate && in.Strategy == repo.StrategyReplace {
		if err := a.uninstall(repo.Ref{Name: p.Name, Platform: p.Platform}, rep); err != nil {
			return false, err
		}
		m, _ = a.load(p.Name)
	}
	staging, err := os.MkdirTemp(a.stateDir(), "staging-")
	if err != nil {
		return true, err
	}
	defer os.RemoveAll(staging)
	files, err := Unpack(blob, staging)
	if err != nil {
		return false, err
	}
	dir := a.versionDir(p.Name, p.Version)
	if old, ok := m.Versions[p.Version]; ok { // a version left beside the live one
		a.removeVersion(p.Name, p.Version, old.Files)
		delete(m.Versions, p.Version)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return true, err
	}
	if err := os.Rename(staging, dir); err != nil {
		return true, fmt.Errorf("%s exists and was not installed by drift: %w", dir, err)
	}
	previous := m.Current
	for _, script := range []struct {
		what, path string
		timeout    time.Duration
	}{{"install hook", p.Hook, hookTimeout}, {"health check", p.Health, healthTimeout}} {
		if script.path == "" {
			continue
		}
		out, err := a.runScript(ctx, dir, script.path, script.timeout, rep.Action, previous)
		rep.HookOutput += out
		if err != nil {
			a.removeVersion(p.Name, p.Version, files)
			a.removePackageDir(p.Name)
			kept := "nothing else was live"
			if previous != "" {
				kept = previous + " stays live"
			}
			return false, fmt.Errorf("%s %s: %w; %s removed, %s", script.what, script.path, err, p.Version, kept)
		}
	}
	m.Versions[p.Version] = installedFiles{SHA256: p.SHA256, Files: files}
	if err := a.save(m); err != nil {
		return true, err
	}
	if err := a.flip(p.Name, p.Version); err != nil {
		return true, err
	}
	m.Current = p.Version
	if err := a.save(m); err != nil {
		return true, err
	}
	rep.Dir, rep.Files = dir, len(files)
	return false, a.dropOthers(in, &m, rep)
}

// dropOthers: an update in place removes every version but the live one,
// once the live one runs.
func (a *Agent) dropOthers(in repo.Instruction, m *manifest, rep *repo.Report) error {
	if in.Action != repo.ActionUpdate {
		return nil
	}
	for _, v := range sortedVersions(m.Versions) {
		if v == m.Current {
			continue
		}
		n, _ := a.removeVersion(m.Name, v, m.Versions[v].Files)
		rep.Removed += n
		delete(m.Versions, v)
	}
	return a.save(*m)
}

// uninstall removes what the agent installed of ref: one version, or all
// when ref has none. Files the agent did not install stay.
func (a *Agent) uninstall(ref repo.Ref, rep *repo.Report) error {
	if err := ref.ValidateAnyVersion(); err != nil {
		return err
	}
	m, err := a.load(ref.Name)
	if err != nil {
		return err
	}
	var kept []string
	for _, v := range sortedVersions(m.Versions) {
		if ref.Version != "" && v != ref.Version {
			continue
		}
		if v == m.Current {
			if err := a.flip(ref.Name, ""); err != nil {
				return err
			}
			m.Current = ""
		}
		n, left := a.removeVersion(ref.Name, v, m.Versions[v].Files)
		rep.Removed += n
		kept = append(kept, left...)
		delete(m.Versions, v)
	}
	if err := a.save(m); err != nil {
		return err
	}
	if len(m.Versions) == 0 {
		a.removePackageDir(ref.Name)
	}
	if len(kept) > 0 {
		rep.HookOutput = fmt.Sprintf("kept %d file(s) drift did not install: %s", len(kept), strings.Join(kept, ", "))
	}
	return nil
}

// download fetches a blob into a temp file and returns its sha256; the
// digest the repository announced and the signed size must match what
// arrived too.
func (a *Agent) download(ctx context.Context, p repo.Package) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Gateway+"/v1/packages/"+p.Name+"/"+p.Version+"/"+p.Platform+"/blob", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if err := statusError(resp); err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(a.stateDir(), "download-")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, p.Size+1))
	if err != nil {
		return f.Name(), "", err
	}
	if n != p.Size {
		return f.Name(), "", fmt.Errorf("download is %d bytes, the signed entry says %d; nothing installed", n, p.Size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if announced := resp.Header.Get(repo.HeaderSHA256); announced != sum {
		return f.Name(), sum, fmt.Errorf("sha256 mismatch: repository announced %s, download is %s; nothing installed", announced, sum)
	}
	return f.Name(), sum, nil
}

// runScript runs a package's hook or health check with sh in its dir.
func (a *Agent) runScript(ctx context.Context, dir, script string, timeout time.Duration, action, previous string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DRIFT_PREFIX="+a.Prefix, "DRIFT_PACKAGE_DIR="+dir, "DRIFT_ACTION="+action, "DRIFT_PREVIOUS="+previous)
	out, err := cmd.CombinedOutput()
	const keep = 4096
	if len(out) > keep {
		out = out[len(out)-keep:]
	}
	return string(out), err
}

// report posts a report, retrying until it is accepted, the repository no
// longer knows the instruction (already reported) or its workflow has
// ended, or ctx ends.
func (a *Agent) report(ctx context.Context, rep repo.Report) error {
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		err := a.call(ctx, http.MethodPost, "/v1/reports", rep, nil)
		var se *repo.StatusError
		if err == nil || errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusGone) {
			os.Remove(a.recordPath(rep.InstructionID))
			return nil
		}
		a.Logger.Warn("report not delivered yet", "instruction", rep.InstructionID, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// call sends in (nil: no body) as JSON to the gateway and decodes its JSON
// answer into out (nil: none).
func (a *Agent) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Gateway+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := statusError(resp); err != nil || out == nil {
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func sortedVersions(vs map[string]installedFiles) []string {
	out := make([]string, 0, len(vs))
	for v := range vs {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func statusError(resp *http.Response) error {
	if resp.StatusCode < 300 {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return &repo.StatusError{Status: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
}

// Results are kept until reported, so a restarted agent reports instead of
// installing twice.
func (a *Agent) recordPath(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(a.stateDir(), "report-"+hex.EncodeToString(sum[:8])+".json")
}

func (a *Agent) record(rep repo.Report) {
	data, _ := json.Marshal(rep)
	os.WriteFile(a.recordPath(rep.InstructionID), data, 0o600)
}

func (a *Agent) recorded(id string) (repo.Report, bool) {
	var rep repo.Report
	data, err := os.ReadFile(a.recordPath(id))
	if err != nil || json.Unmarshal(data, &rep) != nil || rep.InstructionID != id {
		return repo.Report{}, false
	}
	return rep, true
}
