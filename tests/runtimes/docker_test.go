// Package runtimes tests drift's runtimes on real parts: the Docker Engine,
// local processes and (in kubernetes_test.go) a Kubernetes control plane.
// Every runtime passes the same conformance suite, runtimetest.Conformance.
package runtimes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/runtime/docker"
	"github.com/edgedrift/drift/internal/runtime/runtimetest"
	"github.com/edgedrift/drift/tests/harness"
)

func TestDocker(t *testing.T) {
	cli := harness.Docker(t)
	reg := harness.Registry(t)
	v1 := harness.HelloImage(t, reg, "v1")
	v2 := harness.HelloImage(t, reg, "v2")
	web, store := harness.CounterImages(t, reg, "v1")
	t.Logf("images: %s, %s, %s, %s", v1, v2, web, store)

	// A cloud id and a name prefix of our own: other tests may use the same
	// engine at the same time.
	cloud := runtimetest.UniqueName("fog")
	prefix := runtimetest.UniqueName("dk")
	rt := newDocker(t, cloud)

	leftovers := func(t *testing.T) []string { return engineLeftovers(t, cli, cloud, prefix) }
	t.Cleanup(func() {
		// Last line of defence: report and remove anything the subtests left.
		for _, name := range engineLeftovers(t, cli, cloud, prefix) {
			t.Errorf("%s left behind", name)
			kind, name, _ := strings.Cut(name, " ")
			switch kind {
			case "container":
				_ = cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true, RemoveVolumes: true})
			case "network":
				_ = cli.NetworkRemove(context.Background(), name)
			case "volume":
				_ = cli.VolumeRemove(context.Background(), name, true)
			}
		}
		// The images came from this test's registry (a new port each run):
		// drop them so runs do not pile up images on the engine.
		for _, ref := range []string{v1, v2, web, store} {
			if _, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Logf("remove image %s: %v", ref, err)
			}
		}
	})

	t.Run("conformance", func(t *testing.T) {
		runtimetest.Conformance(t, rt, runtimetest.Case{
			Image: v1, Image2: v2, Version: "v1", Version2: "v2", Web: web, Store: store,
			Cloud: cloud, Prefix: prefix + "-c", Serves: true,
			Leftovers: leftovers,
		})
	})

	t.Run("container", func(t *testing.T) {
		name := prefix + "-labels"
		destroyAtEnd(t, rt, name)
		ep := runtimetest.Deploy(t, rt, name, runtime.Spec{
			Image: v1, Port: 8080, Health: "/healthz",
			Env:    map[string]string{"DRIFT_CLOUD": cloud, "PORT": "9999"},
			Labels: map[string]string{runtime.LabelWorkflow: "pipeline/hello/1"},
		}, time.Minute)
		c, err := cli.ContainerInspect(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{
			runtime.LabelOwned:    "true",
			runtime.LabelInstance: name,
			runtime.LabelCloud:    cloud, // added by the runtime: the spec had none
			runtime.LabelWorkflow: runtime.LabelValue("pipeline/hello/1"),
			docker.LabelImage:     v1,
			docker.LabelPort:      "8080",
		} {
			if got := c.Config.Labels[k]; got != v {
				t.Errorf("label %s=%q, want %q", k, got, v)
			}
		}
		if c.Config.Labels[docker.LabelSpec] == "" {
			t.Error("no spec hash label")
		}
		// The spec's PORT loses to the service port.
		if !slices.Contains(c.Config.Env, "PORT=8080") || slices.Contains(c.Config.Env, "PORT=9999") {
			t.Errorf("env %v: want PORT=8080 only", c.Config.Env)
		}
		if c.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
			t.Errorf("restart policy %q", c.HostConfig.RestartPolicy.Name)
		}
		for port, bindings := range c.NetworkSettings.Ports {
			for _, b := range bindings {
				if b.HostIP != "127.0.0.1" {
					t.Errorf("port %s published on %q, want 127.0.0.1 only", port, b.HostIP)
				}
			}
		}
		if len(c.NetworkSettings.Ports["8080/tcp"]) == 0 {
			t.Errorf("8080/tcp not published: %v", c.NetworkSettings.Ports)
		}
		runtimetest.ExpectServes(t, ep, cloud, "v1")

		// The runtime of another cloud on the same engine neither sees nor
		// touches it.
		other := newDocker(t, cloud+"-other")
		if st := runtimetest.Status(t, other, name); st.Exists {
			t.Errorf("another cloud's runtime sees %s: %+v", name, st)
		}
		if got := runtimetest.Names(t, other, nil); len(got) != 0 {
			t.Errorf("another cloud's runtime lists %v", got)
		}
		if err := other.Destroy(context.Background(), name); err != nil {
			t.Errorf("another cloud's Destroy: %v", err)
		}
		if _, err := other.Deploy(context.Background(), name, runtime.Spec{Image: v1, Port: 8080}); err == nil {
			t.Error("another cloud's runtime deployed over the container")
		}
		if st := runtimetest.Status(t, rt, name); !st.Ready || st.Endpoint != ep {
			t.Errorf("after the other cloud's attempts: %+v", st)
		}
	})

	t.Run("concurrent deploys make one container", func(t *testing.T) {
		name := prefix + "-race"
		destroyAtEnd(t, rt, name)
		// Two Runtimes, as two workers would be: only the engine's name
		// uniqueness keeps them from making two containers.
		spec := runtime.Spec{Image: v1, Port: 8080, Health: "/healthz", Env: map[string]string{"DRIFT_CLOUD": cloud}}
		ep := runtimetest.DeployConcurrently(t, name, spec, newDocker(t, cloud), newDocker(t, cloud))
		cs, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", runtime.LabelInstance+"="+name))})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 {
			t.Errorf("%d containers for %s, want 1", len(cs), name)
		}
		runtimetest.ExpectServes(t, ep, cloud, "v1")
	})

	t.Run("stopped container is replaced", func(t *testing.T) {
		name := prefix + "-stopped"
		destroyAtEnd(t, rt, name)
		spec := runtime.Spec{Image: v1, Port: 8080, Health: "/healthz", Env: map[string]string{"DRIFT_CLOUD": cloud}}
		runtimetest.Deploy(t, rt, name, spec, time.Minute)
		timeout := 1
		if err := cli.ContainerStop(context.Background(), name, container.StopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		if st := runtimetest.Status(t, rt, name); !st.Exists || st.Ready {
			t.Errorf("stopped container: Status = %+v, want exists, not ready", st)
		}
		ep := runtimetest.Deploy(t, rt, name, spec, time.Minute)
		runtimetest.ExpectServes(t, ep, cloud, "v1")
		if st := runtimetest.Status(t, rt, name); !st.Ready {
			t.Errorf("after redeploy: %+v", st)
		}
	})

	t.Run("failed deploy leaves nothing", func(t *testing.T) {
		name := prefix + "-broken"
		destroyAtEnd(t, rt, name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := rt.Deploy(ctx, name, runtime.Spec{Image: v1, Port: 8080, Command: []string{"/no-such-binary"}})
		if err == nil {
			t.Fatal("Deploy of a command that does not exist succeeded")
		}
		t.Logf("error, as wanted: %v", err)
		if _, err := cli.ContainerInspect(ctx, name); err == nil {
			t.Error("the failed container was not removed")
		}
		_, err = rt.Deploy(ctx, name, runtime.Spec{Image: reg.Host() + "/no-such-image:v0", Port: 8080})
		if err == nil || errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("Deploy of a missing image: %v", err)
		}
		if st := runtimetest.Status(t, rt, name); st.Exists {
			t.Errorf("after failed deploys: %+v", st)
		}
	})

	t.Run("a container drift does not own is left alone", func(t *testing.T) {
		name := prefix + "-foreign"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// v1 is on the engine by now (conformance pulled it).
		if _, err := cli.ContainerCreate(ctx, &container.Config{Image: v1}, nil, nil, nil, name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true})
		})
		if _, err := rt.Deploy(ctx, name, runtime.Spec{Image: v1, Port: 8080}); err == nil {
			t.Error("Deploy took over a container drift does not own")
		}
		if st := runtimetest.Status(t, rt, name); st.Exists {
			t.Errorf("Status of a foreign container: %+v", st)
		}
		if err := rt.Destroy(ctx, name); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		if _, err := cli.ContainerInspect(ctx, name); err != nil {
			t.Errorf("the foreign container is gone: %v", err)
		}
	})

	t.Run("project", func(t *testing.T) {
		dockerProject(t, cli, rt, cloud, prefix+"-proj", web, store)
	})

	t.Run("a failed project keeps its volume until Destroy", func(t *testing.T) {
		name := prefix + "-projfail"
		destroyAtEnd(t, rt, name)
		spec := runtimetest.CounterSpec(t, web, store, cloud, nil)
		spec.Services[0].Command = []string{"/no-such-binary"} // web cannot start; store can
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := rt.Deploy(ctx, name, spec); err == nil {
			t.Fatal("Deploy of a project whose web cannot start succeeded")
		}
		objs := instanceObjects(t, cli, name)
		if want := []string{"volume " + runtime.ObjectName(name, "counter-data")}; !slices.Equal(objs, want) {
			t.Errorf("after a failed deploy: %v, want %v (nothing runs, the state stays)", objs, want)
		}
		if st := runtimetest.Status(t, rt, name); !st.Exists || st.Ready {
			t.Errorf("Status after a failed deploy: %+v, want exists (its volume), not ready", st)
		}
		if got := runtimetest.Names(t, rt, map[string]string{runtime.LabelInstance: name}); !slices.Equal(got, []string{name}) {
			t.Errorf("List finds %v, want [%s] (so that destroying by label removes the volume)", got, name)
		}
		if err := rt.Destroy(ctx, name); err != nil {
			t.Fatal(err)
		}
		if objs := instanceObjects(t, cli, name); len(objs) != 0 {
			t.Errorf("after Destroy: %v", objs)
		}
	})

	if left := engineLeftovers(t, cli, cloud, prefix); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}

// dockerProject deploys the counter app as one instance and checks what the
// engine holds: a container per service on the instance's own network under
// its service name, the store's volume, all labelled as the instance's; web
// reaches store by name over HTTP; Destroy leaves nothing.
func dockerProject(t *testing.T, cli *client.Client, rt *docker.Runtime, cloud, name, web, store string) {
	destroyAtEnd(t, rt, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	workflow := "session/alice/counter"
	spec := runtimetest.CounterSpec(t, web, store, cloud, map[string]string{runtime.LabelWorkflow: workflow})
	ep := runtimetest.Deploy(t, rt, name, spec, 2*time.Minute)
	want := map[string]string{
		runtime.LabelOwned:    "true",
		runtime.LabelInstance: name,
		runtime.LabelCloud:    cloud,
		runtime.LabelWorkflow: runtime.LabelValue(workflow),
	}
	net, err := cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		t.Fatalf("the instance's network: %v", err)
	}
	expectLabels(t, "network", net.Labels, want)
	vol, err := cli.VolumeInspect(ctx, runtime.ObjectName(name, "counter-data"))
	if err != nil {
		t.Fatalf("the instance's volume: %v", err)
	}
	expectLabels(t, "volume", vol.Labels, want)
	for _, svc := range []struct{ name, image string }{{"web", web}, {"store", store}} {
		c, err := cli.ContainerInspect(ctx, runtime.ObjectName(name, svc.name))
		if err != nil {
			t.Fatalf("container of %s: %v", svc.name, err)
		}
		expectLabels(t, "container "+svc.name, c.Config.Labels, want)
		if c.Config.Labels[runtime.LabelService] != svc.name || c.Config.Image != svc.image {
			t.Errorf("container of %s: service label %q, image %s", svc.name, c.Config.Labels[runtime.LabelService], c.Config.Image)
		}
		e := c.NetworkSettings.Networks[name]
		if e == nil || !slices.Contains(e.Aliases, svc.name) || len(c.NetworkSettings.Networks) != 1 {
			t.Errorf("container of %s is not on network %s as %q: %+v", svc.name, name, svc.name, c.NetworkSettings.Networks)
		}
		if svc.name == "store" {
			if len(c.Mounts) != 1 || c.Mounts[0].Name != vol.Name || c.Mounts[0].Destination != "/data" {
				t.Errorf("store mounts %+v, want %s at /data", c.Mounts, vol.Name)
			}
		}
		if _, ok := net.Containers[c.ID]; !ok {
			t.Errorf("network %s does not hold the container of %s", name, svc.name)
		}
	}
	// web asks the store at http://store:8081: the count goes through both.
	for i := 1; i <= 3; i++ {
		if code, _, body := harness.HTTPPost(t, ep.URL+"/count"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) {
			t.Fatalf("POST /count: %d %s", code, body)
		}
	}
	code, _, body := harness.HTTPGet(t, ep.StateURL)
	if code != 200 || strings.TrimSpace(body) != `{"count":3}` {
		t.Errorf("state endpoint %s: %d %s", ep.StateURL, code, body)
	}
	if err := rt.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	if objs := instanceObjects(t, cli, name); len(objs) != 0 {
		t.Errorf("after Destroy: %v", objs)
	}
}

// instanceObjects lists what the engine holds labelled as instance name's:
// containers, networks and volumes, as "kind name".
func instanceObjects(t *testing.T, cli *client.Client, name string) []string {
	t.Helper()
	return engineObjects(t, cli, filters.NewArgs(filters.Arg("label", runtime.LabelInstance+"="+name)), func(map[string]string, string) bool { return true })
}

func newDocker(t *testing.T, cloud string) *docker.Runtime {
	t.Helper()
	rt, err := docker.New(runtime.Config{Kind: runtime.KindDocker}, cloud)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// engineLeftovers asks the engine itself for drift-owned containers,
// networks and volumes of this cloud or with this name prefix, as "kind
// name".
func engineLeftovers(t *testing.T, cli *client.Client, cloud, prefix string) []string {
	t.Helper()
	return engineObjects(t, cli, filters.NewArgs(filters.Arg("label", runtime.LabelOwned+"=true")), func(labels map[string]string, name string) bool {
		return labels[runtime.LabelCloud] == runtime.LabelValue(cloud) || strings.HasPrefix(name, prefix)
	})
}

// engineObjects lists the containers, networks and volumes matching f that
// keep keeps, as "kind name".
func engineObjects(t *testing.T, cli *client.Client, f filters.Args, keep func(labels map[string]string, name string) bool) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return nil
	}
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if keep(c.Labels, name) {
			out = append(out, "container "+name)
		}
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Errorf("list networks: %v", err)
		return nil
	}
	for _, n := range ns {
		if keep(n.Labels, n.Name) {
			out = append(out, "network "+n.Name)
		}
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Errorf("list volumes: %v", err)
		return nil
	}
	for _, v := range vs.Volumes {
		if keep(v.Labels, v.Name) {
			out = append(out, "volume "+v.Name)
		}
	}
	return out
}

func destroyAtEnd(t *testing.T, rt runtime.Runtime, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.Destroy(ctx, name); err != nil {
			t.Errorf("cleanup: destroy %s: %v", name, err)
		}
	})
}
