// Package agent is the VM side of software installs: it asks the tenant
// gateway for its instructions, downloads each package, checks its sha256,
// unpacks it into a prefix, runs the package's install hook and reports the
// result back through the gateway.
package agent

import (
	"bytes"
	"context"
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
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/netns"
	"github.com/edgedrift/drift/internal/repo"
)

// Agent installs what the gateway says into Prefix.
type Agent struct {
	Gateway string // e.g. http://169.254.169.254:8080
	Prefix  string // packages go to Prefix/<name>/<version>
	// AllowLinkLocal lets a gateway on a link-local address be used from the
	// host's namespace: only for a real VM, whose link-local range is its
	// own. Inside a network namespace it is not needed.
	AllowLinkLocal bool
	Logger         *slog.Logger
	http           *http.Client
}

// hookTimeout bounds an install hook.
const hookTimeout = 5 * time.Minute

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
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	// Every connection is checked again on its resolved address.
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: netns.Control(a.AllowLinkLocal)}
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
	var ins []repo.Instruction
	if err := a.getJSON(ctx, "/v1/instructions", &ins); err != nil {
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

// Install carries out one instruction; every failure is in the report, and
// a failed install leaves nothing in the prefix.
func (a *Agent) Install(ctx context.Context, in repo.Instruction) repo.Report {
	rep := repo.Report{InstructionID: in.ID}
	p := in.Package
	fail := func(transient bool, err error) repo.Report {
		rep.Transient, rep.Error = transient, err.Error()
		a.Logger.Warn("install failed", "instruction", in.ID, "package", p.Ref.String(), "err", err)
		return rep
	}
	if err := p.Validate(); err != nil {
		return fail(false, err)
	}
	blob, sum, err := a.download(ctx, p)
	if blob != "" {
		defer os.Remove(blob)
	}
	if err != nil {
		var se *repo.StatusError
		return fail(!errors.As(err, &se) || se.Status >= 500 || se.Status == http.StatusTooManyRequests, err)
	}
	rep.SHA256 = sum
	if sum != p.SHA256 {
		return fail(true, fmt.Errorf("sha256 mismatch: instruction pins %s, download is %s; nothing installed", p.SHA256, sum))
	}
	dir := filepath.Join(a.Prefix, p.Name, p.Version)
	staging, err := os.MkdirTemp(a.stateDir(), "staging-")
	if err != nil {
		return fail(true, err)
	}
	defer os.RemoveAll(staging)
	files, err := Unpack(blob, staging)
	if err != nil {
		return fail(false, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fail(true, err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(staging, dir); err != nil {
		return fail(true, err)
	}
	if p.Hook != "" {
		out, err := a.runHook(ctx, dir, p.Hook)
		rep.HookOutput = out
		if err != nil {
			os.RemoveAll(dir)
			return fail(false, fmt.Errorf("install hook %s: %w; package removed", p.Hook, err))
		}
	}
	rep.OK, rep.Dir, rep.Files = true, dir, files
	a.Logger.Info("installed", "instruction", in.ID, "package", p.Ref.String(), "dir", dir, "files", files)
	return rep
}

// download fetches a blob into a temp file and returns its sha256; the
// digest the repository announced must match what arrived too.
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
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		return f.Name(), "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if announced := resp.Header.Get(repo.HeaderSHA256); announced != sum {
		return f.Name(), sum, fmt.Errorf("sha256 mismatch: repository announced %s, download is %s; nothing installed", announced, sum)
	}
	return f.Name(), sum, nil
}

func (a *Agent) runHook(ctx context.Context, dir, hook string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", hook)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DRIFT_PREFIX="+a.Prefix, "DRIFT_PACKAGE_DIR="+dir)
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
	data, _ := json.Marshal(rep)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.Gateway+"/v1/reports", bytes.NewReader(data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := a.http.Do(req)
		if err == nil {
			err = statusError(resp)
			resp.Body.Close()
			var se *repo.StatusError
			if err == nil || errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusGone) {
				os.Remove(a.recordPath(rep.InstructionID))
				return nil
			}
		}
		a.Logger.Warn("report not delivered yet", "instruction", rep.InstructionID, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (a *Agent) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Gateway+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := statusError(resp); err != nil {
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
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
