package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/git"
	"github.com/edgedrift/drift/internal/pipelinespec"
)

// Error types of fetching source, for pipelines and ports alike.
const (
	ErrTypeUnreachableRepo = "UnreachableRepo" // git cannot read the repository (final when it does not exist)
	ErrTypeUnknownRef      = "UnknownRef"      // the repository has no such branch, tag or commit
)

// fetchError turns a failed fetch by step into drift's error classes: a
// missing repository or ref is final, anything else (a refused connection,
// a timeout) may be retried, typed the same.
func fetchError(step, repo, ref string, err error) error {
	switch {
	case errors.Is(err, git.ErrNoRef):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s has no ref %q", step, repo, ref), ErrTypeUnknownRef, err)
	case errors.Is(err, git.ErrNoRepo):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: no git repository at %s", step, repo), ErrTypeUnreachableRepo, err)
	}
	return temporal.NewApplicationError(fmt.Sprintf("%s: cannot fetch %s at %q: %v", step, repo, ref, err), ErrTypeUnreachableRepo, err)
}

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
	commit, err := git.Fetch(ctx, lg, src, spec.Repo, spec.Ref)
	if err != nil {
		return Checkout{}, fetchError("clone", spec.Repo, spec.Ref, err)
	}
	tree, err := git.Run(ctx, src, "rev-parse", "FETCH_HEAD^{tree}")
	if err != nil {
		return Checkout{}, err
	}
	fmt.Fprintf(lg, "fetched %s (tree %s)\n", commit, tree)
	return Checkout{Commit: commit, Tree: tree, BuildKey: spec.BuildKey(tree), Log: lg.logs()}, nil
}

// ensureCheckout checks the run's commit out, fetching it again when the
// repository is gone (another build worker, or a resumed run after Cleanup).
func (p *Pipeline) ensureCheckout(ctx context.Context, lg *stepLog, r RunRef, repo string, co Checkout) (string, error) {
	src := filepath.Join(p.runDir(r), "src")
	if head, err := git.Run(ctx, src, "rev-parse", "HEAD"); err == nil && head == co.Commit {
		return src, nil
	}
	if _, err := git.Run(ctx, src, "cat-file", "-e", co.Commit+"^{commit}"); err != nil {
		os.RemoveAll(src)
		fmt.Fprintf(lg, "fetching %s again at %s\n", repo, co.Commit)
		if _, err := git.Fetch(ctx, lg, src, repo, co.Commit); err != nil {
			return "", fetchError("checkout", repo, co.Commit, err)
		}
	}
	if _, err := git.Run(ctx, src, "checkout", "-q", "--detach", co.Commit); err != nil {
		return "", err
	}
	return src, nil
}
