package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/upgrade"
	"github.com/edgedrift/drift/workflows"
)

// The upgrade demo's component and how much data it makes before upgrading.
const (
	demoComponent = "cinder"
	demoVolumes   = 20
	demoWindow    = 15 * time.Minute
)

// upgradeDemo publishes the example component's releases (one image per
// release of the shipped index, built from its embedded source) and two
// builds of the acme driver into the registry, installs cinder 24.2.0 with
// its data on cloud behind a stable endpoint, makes volumes through it,
// and upgrades it to the latest series in verified hops. It prints the
// hops, their checks, and that every volume reads back through the same
// endpoint; the env upgraded from is kept for a rollback.
func upgradeDemo(ctx context.Context, c *client.Client, rt runtime.Runtime, router runtime.Router, cloud, registry string, out io.Writer) error {
	if desc, err := c.Temporal.DescribeWorkflowExecution(ctx, names.UpgradeID(cloud, demoComponent), ""); err == nil &&
		desc.WorkflowExecutionInfo.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return fmt.Errorf("an upgrade of %s on %s still runs: roll it back or let its window end (drift upgrade status --cloud %s --component %s)",
			demoComponent, cloud, cloud, demoComponent)
	}
	ix, err := upgrade.ParseIndex(examples.Releases)
	if err != nil {
		return err
	}
	rels, _, err := ix.Published(demoComponent)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nupgrade demo: building the example component (deploy/examples/cinder)\n")
	bin, err := demo.CinderBinary(ctx)
	if err != nil {
		return err
	}
	var tags []string
	for _, r := range rels {
		tags = append(tags, r.Tag)
	}
	repo, err := demo.CinderReleases(ctx, registry, "kolla/cinder", demoComponent, tags, bin)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  released %s at %v\n", repo, tags)
	oldDriver, err := demo.DriverImage(ctx, registry, demo.Driver{Name: "acme", Version: "1.0.0", Components: map[string]string{demoComponent: ">= 24.0.0, < 26.0.0"}})
	if err != nil {
		return err
	}
	newDriver, err := demo.DriverImage(ctx, registry, demo.Driver{Name: "acme", Version: "3.0.0", Components: map[string]string{demoComponent: ">= 25.0.0"}})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  drivers %s (cinder >= 24.0.0, < 26.0.0) and %s (cinder >= 25.0.0)\n", oldDriver, newDriver)

	// What an earlier demo left (its window ended) goes first.
	if err := demo.RemoveComponent(ctx, rt, router, demoComponent); err != nil {
		return err
	}
	route, err := demo.InstallComponent(ctx, rt, router, demo.Install{Component: demoComponent, Repo: repo, Version: "24.2.0", Driver: oldDriver, Data: true})
	if err != nil {
		return err
	}
	consumer := demo.Consumer{URL: route.Endpoint.URL, Client: &http.Client{Timeout: 30 * time.Second}}
	var vols []demo.Volume
	for i := range demoVolumes {
		v, err := consumer.Create(ctx, fmt.Sprintf("before-%02d", i), fmt.Sprintf("written by 24.2.0, volume %d", i))
		if err != nil {
			return err
		}
		vols = append(vols, v)
	}
	fmt.Fprintf(out, "  installed %s 24.2.0 with driver acme 1.0.0 on %s (%s); %d volumes made through its stable endpoint %s\n",
		demoComponent, cloud, rt.Kind(), len(vols), route.Endpoint.URL)

	in := workflows.UpgradeInput{
		Cloud: cloud,
		Component: workflows.ComponentSpec{Name: demoComponent, Repository: repo, Version: "24.2.0", Port: demo.CinderPort,
			Health: demo.CinderHealth, Env: map[string]string{"ROLE": "api"},
			Data: workflows.DataSpec{Volume: demo.DataVolume(demoComponent), Path: demo.CinderData, Manage: []string{demo.CinderManage}, List: demo.CinderVolumes}},
		Related: workflows.RelatedSpec{Name: demoComponent + "-volume", Env: map[string]string{"ROLE": "volume"}, Health: demo.CinderHealth, Verify: demo.CinderVerify},
		Driver:  workflows.DriverSpec{Name: "acme", Version: "3.0.0", Image: newDriver},
		Policy:  workflows.PolicyPlatform,
		Index:   string(examples.Releases),
		Drain:   2 * time.Second,
		Window:  demoWindow,
	}
	if err := printPath(out, ix, in); err != nil {
		return err
	}
	wr, err := c.StartUpgrade(ctx, in)
	if err != nil {
		return err
	}
	p, err := followUpgrade(ctx, c, cloud, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	printUpgrade(out, p)
	if p.Phase != "window" {
		_, err := client.Follow[workflows.UpgradeProgress](ctx, c, wr, 0, nil)
		return fmt.Errorf("the upgrade ended %s: %v", p.Phase, err)
	}
	bad, err := consumer.Missing(ctx, vols)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d volumes lost: %v", len(bad), len(vols), bad)
	}
	fmt.Fprintf(out, "\nall %d volumes made before the upgrade are listed and read back through %s, now served by %s %s\n",
		len(vols), route.Endpoint.URL, demoComponent, p.Serving.Version)
	fmt.Fprintf(out, "roll back within %s: drift upgrade rollback --cloud %s --component %s --who you --why 'try it'\n", demoWindow, cloud, demoComponent)
	return nil
}

// followUpgrade prints the upgrade's phases as they change and returns its
// progress once it has switched (the rollback window) or ended.
func followUpgrade(ctx context.Context, c *client.Client, cloud string, out io.Writer) (workflows.UpgradeProgress, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	last := ""
	for {
		p, err := c.UpgradeProgress(ctx, cloud, demoComponent)
		if p.Phase != last && p.Phase != "" {
			last = p.Phase
			fmt.Fprintf(out, "  %s  %s\n", time.Now().Format("15:04:05"), p.Phase)
		}
		switch {
		case p.Phase == "window" || p.Phase == "done" || p.Phase == "failed":
			return p, nil
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return p, fmt.Errorf("the upgrade did not reach its rollback window in 20m (phase %q, %v): see drift upgrade status --cloud %s --component %s",
				p.Phase, err, cloud, demoComponent)
		case ctx.Err() != nil:
			return p, ctx.Err()
		}
		time.Sleep(500 * time.Millisecond)
	}
}
