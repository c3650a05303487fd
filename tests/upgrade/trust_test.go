package upgrade

import (
	"context"
	"strings"
	"testing"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/upgrade"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/workflows"
)

// A site with a trust policy upgrades only from signed releases and a
// signed driver. The env drift layers of the two at the site is signed by
// no one and is trusted as exactly their sum; an unsigned driver is refused
// with UntrustedImage before anything of an attempt runs, and prod keeps
// serving.
func TestUpgradeUntrustedDriverIsRefusedUnderATrustPolicy(t *testing.T) {
	ctx := context.Background()
	reg, repo := publish(t)
	signer, err := release.EnsureKeyPair(release.KeyFiles(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(ref string) {
		pinned, err := image.Resolve(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		r, digest, _ := strings.Cut(pinned, "@")
		if _, err := release.Attach(ctx, signer, release.Release{Repo: r, Digest: digest}); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := upgrade.ParseIndex(examples.Releases)
	if err != nil {
		t.Fatal(err)
	}
	rels, _, err := ix.Published("cinder")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range rels {
		sign(repo + ":" + rel.Tag)
	}
	policy, err := release.NewPolicy([][]byte{signer.PublicPEM()}, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, reg, repo, "upgrade-edge", runtime.Config{Kind: runtime.KindProcess}, func(o *workerhost.WorkerOptions) { o.Trust = policy })
	r.install(t, "cinder", r.repo, "24.2.0", r.driver(t, "1.0.0", ">= 24.0.0, < 26.0.0", ""), false)

	driver := r.driver(t, "3.0.0", ">= 25.0.0", "")
	in := r.cinderInput(workflows.PolicyPlatform, "3.0.0", driver)
	in.Component.Data = workflows.DataSpec{}
	in.Attempts = 1
	res, err := r.run(t, in)
	if err == nil || len(res.Attempts) != 1 || !strings.Contains(res.Attempts[0].Error, "refuses to run it") || !strings.Contains(res.Attempts[0].Error, "acme") {
		t.Fatalf("an unsigned driver: %v, attempts %+v", err, res.Attempts)
	}
	if envs := r.envsOf(t, "cinder"); len(envs) != 1 || len(envs[prodEnv]) != 2 {
		t.Errorf("cinder envs %v after the refusal, want prod only", envs)
	}

	sign(driver)
	res, err = r.run(t, in)
	if err != nil {
		t.Fatalf("a signed driver: %v\n%s", err, report(res))
	}
	if res.Phase != "done" || res.Serving.Version != "28.0.0" {
		t.Fatalf("result %+v", res)
	}
	made, err := image.Resolve(ctx, res.Serving.Image)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := release.Verify(ctx, made, policy); err == nil {
		t.Errorf("the env image %s is signed: the test does not show a layered env being trusted", made)
	}
}
