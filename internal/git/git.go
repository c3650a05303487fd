// Package git is drift's one way of running git: fetching the commit a
// pipeline or a port works on, committing, and reading ids. It tells a
// repository or ref that does not exist (no retry helps) from a failure
// worth retrying, by what git said.
package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Errors a fetch is classified as; anything else may be retried.
var (
	ErrNoRepo = errors.New("no git repository there")
	ErrNoRef  = errors.New("no such ref")
)

// Run runs git in dir and returns its trimmed output; the error carries
// what git said. git never prompts for credentials.
func Run(ctx context.Context, dir string, args ...string) (string, error) {
	var out bytes.Buffer
	if err := run(ctx, dir, &out, args...); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func run(ctx context.Context, dir string, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

// Fetch makes dir a git repository holding the one commit that ref (a
// branch, tag or commit; "" is the remote's HEAD) names in repo, without
// its history, and returns that commit; nothing is checked out. git's
// output also goes to log (nil: nowhere). A missing repository or ref
// wraps ErrNoRepo or ErrNoRef.
func Fetch(ctx context.Context, log io.Writer, dir, repo, ref string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if IsLocalPath(repo) {
		abs, err := filepath.Abs(repo)
		if err != nil {
			return "", err
		}
		repo = "file://" + abs // local paths ignore --depth; file:// honours it
	}
	if ref == "" {
		ref = "HEAD"
	}
	if log == nil {
		log = io.Discard
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"fetch", "-q", "--depth", "1", "--no-tags", "--", repo, ref},
	} {
		var said bytes.Buffer
		if err := run(ctx, dir, io.MultiWriter(log, &said), args...); err != nil {
			return "", classify(repo, ref, said.String(), err)
		}
	}
	return Run(ctx, dir, "rev-parse", "FETCH_HEAD^{commit}")
}

// classify tells a missing repository or ref from what git said.
func classify(repo, ref, said string, err error) error {
	low := strings.ToLower(said)
	switch {
	case strings.Contains(low, "couldn't find remote ref"), strings.Contains(low, "not our ref"),
		strings.Contains(low, "unadvertised object"), strings.Contains(low, "no such ref"):
		return fmt.Errorf("%s has no ref %q: %w", repo, ref, ErrNoRef)
	case strings.Contains(low, "does not appear to be a git repository"), strings.Contains(low, "repository not found"),
		strings.Contains(low, "does not exist"), strings.Contains(low, "not found"):
		return fmt.Errorf("%s: %w", repo, ErrNoRepo)
	}
	return fmt.Errorf("fetch %s %s: %w: %s", repo, ref, err, strings.TrimSpace(said))
}

// IsLocalPath reports whether repo is a path rather than a URL (scheme://
// or scp-like host:path).
func IsLocalPath(repo string) bool {
	return !strings.Contains(repo, "://") && !strings.Contains(strings.SplitN(repo, "/", 2)[0], ":")
}

// Commit commits everything in the work tree as drift and returns the new
// commit; with allowEmpty an unchanged tree still gets a commit.
func Commit(ctx context.Context, dir, message string, allowEmpty bool) (string, error) {
	if _, err := Run(ctx, dir, "add", "-A"); err != nil {
		return "", err
	}
	args := []string{"-c", "user.name=drift", "-c", "user.email=drift@localhost", "commit", "-q", "-m", message}
	if allowEmpty {
		args = append(args, "--allow-empty")
	}
	if _, err := Run(ctx, dir, args...); err != nil {
		return "", err
	}
	return Run(ctx, dir, "rev-parse", "HEAD")
}

// DiffStat compares two directories that need not be in a repository
// (git diff --no-index) and returns the shortstat ("" when they are equal).
func DiffStat(ctx context.Context, a, b string) (string, error) {
	var out bytes.Buffer
	err := run(ctx, "", &out, "diff", "--no-index", "--shortstat", "--", a, b)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return "", fmt.Errorf("git diff --no-index: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
