package activities

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/pipelinespec"
)

// Clone fetches the spec's ref shallowly with the real git and records the
// exact commit and tree it found, and the build key of that tree.
func (p *Pipeline) Clone(ctx context.Context, r RunRef, spec pipelinespec.Spec) (Checkout, error) {
	stop := heartbeat(ctx)
	defer stop()
	src := filepath.Join(p.runDir(r), "src")
	if err := os.RemoveAll(src); err != nil {
		return Checkout{}, err
	}
	lg, err := openLog(p.logFile(r, "clone"))
	if err != nil {
		return Checkout{}, err
	}
	defer lg.Close()
	if err := fetch(ctx, lg, src, spec.Repo, spec.Ref); err != nil {
		return Checkout{}, err
	}
	ids, err := gitOut(ctx, src, "rev-parse", "FETCH_HEAD^{commit}", "FETCH_HEAD^{tree}")
	if err != nil {
		return Checkout{}, err
	}
	commit, tree, _ := strings.Cut(ids, "\n")
	fmt.Fprintf(lg, "fetched %s (tree %s)\n", commit, tree)
	return Checkout{Commit: commit, Tree: tree, BuildKey: spec.BuildKey(tree), Log: lg.logs()}, nil
}

// fetch makes dir a git repository holding the one commit ref (a branch, tag
// or commit) names in repo, without its history; nothing is checked out
// until a step needs the files (a reused build never does).
func fetch(ctx context.Context, lg *stepLog, dir, repo, ref string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if isLocalPath(repo) {
		abs, err := filepath.Abs(repo)
		if err != nil {
			return err
		}
		repo = "file://" + abs // local paths ignore --depth; file:// honours it
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"fetch", "-q", "--depth", "1", "--no-tags", "--", repo, ref},
	} {
		if err := lg.run(ctx, dir, nil, "git", args...); err != nil {
			return classifyGit(repo, ref, lg.tailText(), err)
		}
	}
	return nil
}

func isLocalPath(repo string) bool {
	return !strings.Contains(repo, "://") && !strings.Contains(strings.SplitN(repo, "/", 2)[0], ":")
}

// classifyGit tells a missing repository or ref (no retry helps) from a
// failure worth retrying, from what git said.
func classifyGit(repo, ref, out string, err error) error {
	low := strings.ToLower(out)
	switch {
	case strings.Contains(low, "couldn't find remote ref"), strings.Contains(low, "not our ref"),
		strings.Contains(low, "unadvertised object"), strings.Contains(low, "no such ref"):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("clone: %s has no ref %q", repo, ref), ErrTypeUnknownRef, err)
	case strings.Contains(low, "does not appear to be a git repository"), strings.Contains(low, "repository not found"),
		strings.Contains(low, "does not exist"), strings.Contains(low, "not found"):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("clone: no git repository at %s", repo), ErrTypeUnknownRepo, err)
	}
	return fmt.Errorf("clone %s %s: %w: %s", repo, ref, err, out)
}

// ensureCheckout checks the run's commit out, fetching it again when the
// repository is gone (another build worker, or a resumed run after Cleanup).
func (p *Pipeline) ensureCheckout(ctx context.Context, lg *stepLog, r RunRef, repo string, co Checkout) (string, error) {
	src := filepath.Join(p.runDir(r), "src")
	if head, err := gitOut(ctx, src, "rev-parse", "HEAD"); err == nil && head == co.Commit {
		return src, nil
	}
	if _, err := gitOut(ctx, src, "cat-file", "-e", co.Commit+"^{commit}"); err != nil {
		os.RemoveAll(src)
		fmt.Fprintf(lg, "fetching %s again at %s\n", repo, co.Commit)
		if err := fetch(ctx, lg, src, repo, co.Commit); err != nil {
			return "", err
		}
	}
	if err := lg.run(ctx, src, nil, "git", "checkout", "-q", "--detach", co.Commit); err != nil {
		return "", fmt.Errorf("checkout %s: %w: %s", co.Commit, err, lg.tailText())
	}
	return src, nil
}

func gitOut(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}
