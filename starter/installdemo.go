package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/workflows"
)

// The install demo's fixed parts.
const (
	demoTenant  = "demo"
	demoPackage = "greeter"
)

// newInstallDemoCommand is `drift demo install`, against a running drift dev.
func newInstallDemoCommand(g *globals) *cobra.Command {
	var o installDemo
	var repoURL string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Register agents on loopback, publish a signed package, run fleet installs with an error budget",
		Long: `install needs drift dev running (no root; drift dev --demo=install runs both
in one process). It publishes greeter 1.0.0 and 1.1.0, signed by a publisher
key of its own and by the repository, places tenant "demo"'s gateway on
loopback, and runs --agents VM agents in this process, each connecting from
its own 127.0.0.x address and registering with label role=web. One of them
trusts no key that signed greeter, so it refuses it. Then it installs
greeter@1.0.0 on role=web with --max-errors 1 (the refusal fits the budget),
updates to latest one VM at a time with --max-errors 0 (the refusal stops the
rollout and the VMs after it are skipped), and shows the inventory. Every
step is a workflow in the Web UI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.agents < 2 || o.agents > 50 {
				return fmt.Errorf("--agents %d: between 2 and 50", o.agents)
			}
			token, err := workerhost.ReadSecret(filepath.Join(o.dataDir, "repo-token"))
			if err != nil {
				return fmt.Errorf("the repository's admin token (drift dev writes it in --data-dir): %w", err)
			}
			o.repo = &repo.Client{URL: repoURL, Token: token}
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				return o.run(ctx, c, cmd.OutOrStdout())
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "drift dev's data dir (its repository's token and key; the demo's keys and VM prefixes go under install-demo/)")
	fl.StringVar(&repoURL, "repo", config.EnvOr("DRIFT_REPO", "http://127.0.0.1:8700"), "drift dev's software repository (env DRIFT_REPO)")
	fl.StringVar(&o.listen, "listen", defaultDemoListen, "the demo tenant's gateway on loopback")
	fl.IntVar(&o.agents, "agents", 4, "VM agents to run")
	return cmd
}

// defaultDemoListen is where the install demo's tenant gateway listens.
const defaultDemoListen = "127.0.0.1:18080"

// installDemo is what the install demo runs against: drift dev's
// repository and data dir, where the tenant's gateway listens and how
// many agents it runs.
type installDemo struct {
	repo    *repo.Client
	dataDir string
	listen  string
	agents  int
}

func (o installDemo) run(ctx context.Context, c *client.Client, out io.Writer) error {
	started, rc, n, dir := time.Now(), o.repo, o.agents, filepath.Join(o.dataDir, "install-demo")
	fmt.Fprintf(out, "install demo: tenant %q, repository %s\n", demoTenant, rc.URL)
	if _, err := demoPublish(ctx, rc, dir, out); err != nil {
		return err
	}
	repoKeys, err := repo.LoadPublicKeys(filepath.Join(o.dataDir, workerhost.SigningKeyFile+".pub"))
	if err != nil {
		return fmt.Errorf("the repository's public key (drift dev writes it): %w", err)
	}
	pair, err := c.PlaceGateway(ctx, demoTenant, workflows.Placement{Listen: o.listen})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  tenant gateway %s ↔ %s (network node of drift dev)\n", pair.Address, pair.Socket)

	_, stranger, _ := ed25519.GenerateKey(nil)
	var specs []demo.AgentSpec
	for i := 1; i <= n; i++ {
		s := demo.AgentSpec{Name: fmt.Sprintf("demo-vm-%d", i), Source: fmt.Sprintf("127.0.0.%d", 10+i), Labels: map[string]string{"role": "web"}, Trusted: repoKeys}
		if i == 3 {
			s.Trusted = []ed25519.PublicKey{stranger.Public().(ed25519.PublicKey)}
		}
		specs = append(specs, s)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	agents, err := demo.StartAgents("http://"+pair.Address, filepath.Join(dir, "vms"), 500*time.Millisecond, quiet, specs...)
	if err != nil {
		return err
	}
	defer agents.Stop()
	if err := waitRegistered(ctx, c, specs, started); err != nil {
		return err
	}
	fmt.Fprintf(out, "  %d agents registered from 127.0.0.11-%d with role=web; %s trusts no key that signed %s\n", n, 10+n, specs[2].Name, demoPackage)

	stamp := time.Now().UTC().Format("150405")
	for _, step := range []struct {
		title string
		r     workflows.Rollout
	}{
		{"install 1.0.0 on role=web, 2 VMs at once, 1 failure allowed", workflows.Rollout{Rollout: "demo-" + stamp + "-install",
			Selector: "role=web", Package: demoPackage, Version: "1.0.0", Platform: "linux/amd64", MaxConcurrency: "2", MaxErrors: "1"}},
		{"update to latest (A/B, in place), 1 VM at a time, no failure allowed", workflows.Rollout{Rollout: "demo-" + stamp + "-update",
			Selector: "role=web", Package: demoPackage, Version: "latest", Platform: "linux/amd64", Action: repo.ActionUpdate, MaxConcurrency: "1", MaxErrors: "0"}},
	} {
		fmt.Fprintf(out, "\n%s:\n", step.title)
		run, err := c.StartRollout(ctx, demoTenant, step.r)
		if err != nil {
			return err
		}
		p, err := followFleet(ctx, c, run, out, true)
		printFleet(out, p)
		var appErr *temporal.ApplicationError
		if err != nil && !(errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeErrorBudget) {
			return err
		}
	}
	v, err := c.Inventory(ctx, demoTenant)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	printInventory(out, v)
	fmt.Fprintf(out, "\nThe agents stop as the demo ends; their prefixes stay in %s.\nIn the Web UI: inventory/%s, fleet/%s/demo-%s-* and one install per VM.\n",
		filepath.Join(dir, "vms"), demoTenant, demoTenant, stamp)
	return nil
}

// waitRegistered waits (bounded) until every agent has registered since
// started.
func waitRegistered(ctx context.Context, c *client.Client, specs []demo.AgentSpec, started time.Time) error {
	deadline := time.Now().Add(client.InventoryWait)
	for {
		v, err := c.Inventory(ctx, demoTenant)
		seen := 0
		for _, vm := range v.VMs {
			for _, s := range specs {
				if vm.Name == s.Name && !vm.Seen.Before(started.Add(-time.Second)) {
					seen++
				}
			}
		}
		if err == nil && seen == len(specs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d agents registered within %s (%v): does drift dev run the network node and its gateway at the address above?", seen, len(specs), client.InventoryWait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// demoPublish pushes greeter's versions signed by the demo's publisher key
// (kept in dir).
func demoPublish(ctx context.Context, rc *repo.Client, dir string, out io.Writer) (ed25519.PublicKey, error) {
	keyFile := filepath.Join(dir, "publisher.key")
	var key ed25519.PrivateKey
	data, err := os.ReadFile(keyFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		key, err = repo.GenerateKey(keyFile)
	case err == nil:
		key, err = repo.ParsePrivateKey(data)
	}
	if err != nil {
		return nil, err
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		blob, err := demo.GreeterPackage(v)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(blob)
		p, err := rc.Push(ctx, repo.Ref{Name: demoPackage, Version: v, Platform: "linux/amd64"}, hex.EncodeToString(sum[:]), bytes.NewReader(blob),
			repo.PushOptions{Tenants: []string{demoTenant}, Hook: "install.sh", Health: "health.sh", Publisher: key, Size: int64(len(blob))})
		if err != nil {
			return nil, fmt.Errorf("publish %s@%s: %w", demoPackage, v, err)
		}
		fmt.Fprintf(out, "  published %s, signed by %s\n", p.Ref, signers(p))
	}
	return key.Public().(ed25519.PublicKey), nil
}
