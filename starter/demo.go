package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/workflows"
)

// demoRegions walk the example topology: warm moves to neighbours, cold
// ones across the city.
var demoRegions = []string{"quartier-latin", "montparnasse", "bastille", "montmartre", "la-defense", "quartier-latin"}

// walkDemo releases the example apps through the pipeline, then walks a
// session of each with the images the pipeline made: hello, one service;
// then counter, a compose project of two services whose count the walk
// reads after every move.
func walkDemo(ctx context.Context, c *client.Client, topo *topology.Topology, dataDir string, out io.Writer) error {
	for _, r := range demoRegions {
		if _, err := topo.FirstCloud(r); err != nil {
			return fmt.Errorf("the demo walks the example topology: %w", err)
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	pr, err := demoRelease(ctx, c, topo, abs, helloRelease, out)
	if err != nil {
		return err
	}
	hello, err := appspec.FromImage("hello", pr.Image, 8080)
	if err != nil {
		return err
	}
	hello.Health = "/healthz"
	if _, err := demoWalk(ctx, c, topo, hello, "alice", demoRegions, nil, out); err != nil {
		return err
	}

	pr, err = demoRelease(ctx, c, topo, abs, counterRelease, out)
	if err != nil {
		return err
	}
	counter, err := appspec.FromCompose(examples.CounterCompose, "")
	if err != nil {
		return err
	}
	images := map[string]string{}
	for _, b := range pr.Images {
		images[b.Service] = b.Image
	}
	counter = counter.WithImages(images)
	check := &counterCheck{}
	if _, err := demoWalk(ctx, c, topo, counter, "alice", demoRegions, check, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "  %s\n", check.summary())
	return nil
}

// exampleApp is one example app's release: its source, as a repository of
// its own, and its pipeline spec.
type exampleApp struct {
	name  string
	files func() (map[string][]byte, error)
	spec  []byte
}

var (
	helloRelease   = exampleApp{"hello", demo.HelloFiles, examples.Pipeline}
	counterRelease = exampleApp{"counter", demo.CounterFiles, examples.CounterPipeline}
)

// demoRelease puts an example app's source in a git repository of its own
// under dataDir (demo/<app>.git) and runs its example pipeline on it
// (deploy/examples/pipeline*.yaml): clone, build and test for every
// platform, package, image(s), push to the center registry, deploy to the
// spec's targets. It prints each step and returns the run's progress; its
// images are what the walk deploys.
func demoRelease(ctx context.Context, c *client.Client, topo *topology.Topology, dataDir string, rel exampleApp, out io.Writer) (workflows.PipelineProgress, error) {
	files, err := rel.files()
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	bare, err := demo.GitRepo(ctx, filepath.Join(dataDir, "demo"), rel.name, files)
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	spec, err := pipelinespec.Parse(rel.spec, examples.ReadFile)
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	spec.Repo = "file://" + bare
	run := "demo-" + time.Now().UTC().Format("20060102-150405")
	var targets []string
	for _, t := range spec.Deploy.Targets {
		targets = append(targets, t.Cloud)
	}
	var imgs, plats []string
	for _, img := range spec.ImageSpecs() {
		imgs = append(imgs, img.Name)
	}
	for _, pl := range spec.Platforms() {
		plats = append(plats, pl.String())
	}
	fmt.Fprintf(out, "\npipeline %s: %s@%s → build + test → image %s (%s) → center registry → %s\n",
		names.PipelineID(spec.App, run), spec.Repo, spec.Ref, strings.Join(imgs, ", "), strings.Join(plats, ", "), strings.Join(targets, ", "))
	wr, err := c.StartPipeline(ctx, workflows.PipelineInput{Run: run, Spec: spec, Topology: topo})
	if err != nil {
		return workflows.PipelineProgress{}, err
	}
	pr, err := followPipeline(ctx, c, wr, out)
	if err != nil {
		return pr, err
	}
	how := "built"
	if pr.Reused {
		how = "reused (same source tree and build spec as an earlier run)"
	}
	if pr.Image != "" {
		fmt.Fprintf(out, "  image %s %s\n", pr.Image, how)
	}
	for _, b := range pr.Images {
		fmt.Fprintf(out, "  image of %s: %s %s\n", b.Service, b.Image, how)
	}
	eps := pr.Endpoints()
	for _, cloud := range slices.Sorted(maps.Keys(eps)) {
		fmt.Fprintf(out, "  released on %-16s %s\n", cloud, eps[cloud].URL)
	}
	fmt.Fprintf(out, "  logs: drift pipeline logs %s %s --data-dir %s\n", spec.App, run, dataDir)
	return pr, nil
}

// demoWalk opens a session of spec for user in the first region, moves it
// through the others and exits, printing each step and the report; check,
// when not nil, looks at the app after the session opens and after each
// move and adds what it saw.
func demoWalk(ctx context.Context, c *client.Client, topo *topology.Topology, spec appspec.AppSpec, user string, regions []string, check *counterCheck, out io.Writer) (workflows.SessionState, error) {
	fmt.Fprintf(out, "\nmobility session %s over %q (pre-deploy to adjacent clouds):\n", names.SessionID(user, spec.Name), topo.Name())
	res, err := c.OpenSession(ctx, client.Open{
		User: user, App: spec, Region: regions[0], Topology: topo,
		Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNeighbours,
	})
	if err != nil {
		return workflows.SessionState{}, err
	}
	fmt.Fprintf(out, "  %-15s served from %-18s %s\n", regions[0], res.Cloud, res.Endpoint.URL)
	if check != nil {
		fmt.Fprintf(out, "  %-15s %s\n", "", check.opened(ctx, res.Endpoint))
	}
	for _, region := range regions[1:] {
		if err := settle(ctx, c, user, spec.Name); err != nil {
			return workflows.SessionState{}, err
		}
		res, err := c.Move(ctx, user, spec.Name, region)
		if err != nil {
			return workflows.SessionState{}, err
		}
		kind := "cold"
		if res.Warm {
			kind = "warm"
		}
		fmt.Fprintf(out, "  %-15s served from %-18s %s  (%s handover, switch %s)\n", region, res.Cloud, res.Endpoint.URL, kind, res.SwitchTime)
		if check != nil {
			fmt.Fprintf(out, "  %-15s %s\n", "", check.moved(ctx, res.Endpoint))
		}
	}
	if err := settle(ctx, c, user, spec.Name); err != nil {
		return workflows.SessionState{}, err
	}
	st, err := c.Session(ctx, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	var warm []string
	for _, in := range st.Instances {
		if in.Role == workflows.RoleWarm && in.Status == workflows.StatusReady {
			warm = append(warm, in.Cloud)
		}
	}
	fmt.Fprintf(out, "  warm now on: %s\n", strings.Join(warm, ", "))
	rep, err := c.Exit(ctx, user, spec.Name)
	if err != nil {
		return workflows.SessionState{}, err
	}
	t := rep.Totals
	fmt.Fprintf(out, "  exit: %d handovers (%d warm, %d cold), %.1f instance-seconds spent on pre-deploys, every instance destroyed\n",
		t.Handovers, t.Warm, t.Cold, t.PreDeploySeconds)
	return rep, nil
}

// settle waits until no deploy or destroy of the session is in flight, so
// the walk shows what pre-deploys buy.
func settle(ctx context.Context, c *client.Client, user, app string) error {
	for {
		st, err := c.Session(ctx, user, app)
		if err != nil {
			return err
		}
		if len(st.InFlight) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// counterCheck follows the counter app's count across a walk: the user
// counts a few times when the session opens, and after each move the walk
// reads the count where the user is served now, says whether it is the
// count the user saw before the move, and counts once more. It checks
// rather than assumes: the count survives a handover only if the state
// moved with the user.
type counterCheck struct {
	seen      int // the count the user saw last
	moves     int
	survived  int
	unchecked int // moves after which the count could not be read
}

// counterClient reads the demo's endpoints (on this host for Docker and
// processes; a cluster's service addresses may not answer from here).
var counterClient = &http.Client{Timeout: 5 * time.Second}

// count asks the counter app at ep: GET / reads, POST /count adds one.
func (*counterCheck) count(ctx context.Context, ep runtime.Endpoint, method string) (int, error) {
	url := ep.URL + "/"
	if method == http.MethodPost {
		url = ep.URL + "/count"
	}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := counterClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	var body struct{ Count int }
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Count, err
}

// opened counts three times where the session opened.
func (c *counterCheck) opened(ctx context.Context, ep runtime.Endpoint) string {
	for range 3 {
		n, err := c.count(ctx, ep, http.MethodPost)
		if err != nil {
			return "cannot count: " + err.Error()
		}
		c.seen = n
	}
	return fmt.Sprintf("counted to %d", c.seen)
}

// moved reads the count after a move, compares, and counts once more.
func (c *counterCheck) moved(ctx context.Context, ep runtime.Endpoint) string {
	c.moves++
	n, err := c.count(ctx, ep, http.MethodGet)
	if err != nil {
		c.unchecked++
		return "cannot read the counter here: " + err.Error()
	}
	var said string
	if n == c.seen {
		c.survived++
		said = fmt.Sprintf("counter %d: survived the handover", n)
	} else {
		said = fmt.Sprintf("counter %d: did NOT survive the handover (it was %d)", n, c.seen)
	}
	if next, err := c.count(ctx, ep, http.MethodPost); err == nil {
		c.seen = next
		said += fmt.Sprintf(", counted to %d", next)
	} else {
		c.seen = n
	}
	return said
}

// summary says how many handovers the count survived.
func (c *counterCheck) summary() string {
	switch {
	case c.moves == 0:
		return "counter: no handover to check"
	case c.survived == c.moves:
		return fmt.Sprintf("counter survived every handover (%d of %d)", c.survived, c.moves)
	case c.unchecked > 0:
		return fmt.Sprintf("counter survived %d of %d handovers (%d could not be checked from here)", c.survived, c.moves, c.unchecked)
	}
	return fmt.Sprintf("counter survived %d of %d handovers: the app's state stayed behind on the others", c.survived, c.moves)
}

// newDemoCommand runs a demo against a running stack (drift dev).
func newDemoCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "Show a job on the example inputs against a running stack (drift dev)"}
	var dataDir string
	port := &cobra.Command{
		Use:   "port",
		Short: "Port the example module (bolt v1.3.1, x/sys 2018) to loong64, run it under qemu and print the report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd, g, func(ctx context.Context, c *client.Client) error {
				return portDemo(ctx, c, dataDir, cmd.OutOrStdout())
			})
		},
	}
	port.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "where the example module's git repository is made")
	cmd.AddCommand(port, newInstallDemoCommand(g))
	return cmd
}

// portDemo commits the porting example (deploy/examples/port) to a git
// repository under dataDir and ports it to loong64 with PortToArch:
// diagnose, upgrade x/sys, patch bolt, cross-build, run the program under
// qemu against the host build, run its tests under qemu, push the image.
// It prints each step and the report.
func portDemo(ctx context.Context, c *client.Client, dataDir string, out io.Writer) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	repo, err := demo.PortRepo(ctx, filepath.Join(abs, "demo", "port"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nport file://%s (bolt v1.3.1, x/sys 2018-09: no build for linux/loong64 today) → linux/loong64\n", repo)
	r, err := c.StartPort(ctx, workflows.PortInput{Repo: "file://" + repo, Ref: "main"})
	if err != nil {
		return err
	}
	last := ""
	rep, err := client.Follow(ctx, c, r, 500*time.Millisecond, func(rep workflows.PortReport) {
		if rep.Step != last {
			last = rep.Step
			fmt.Fprintf(out, "  %s  %s\n", time.Now().Format("15:04:05"), rep.Step)
		}
	})
	if rep.ID == "" {
		return err
	}
	fmt.Fprintln(out)
	printPortReport(out, rep)
	return err
}
