// Package runtimes tests drift's runtimes on real parts: the Docker Engine,
// local processes and (in kubernetes_test.go) a Kubernetes control plane.
// Every runtime passes the same conformance suite, runtimetest.Conformance.
package runtimes

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
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
	t.Logf("images: %s, %s", v1, v2)

	// A cloud id and a name prefix of our own: other tests may use the same
	// engine at the same time.
	cloud := runtimetest.UniqueName("fog")
	prefix := runtimetest.UniqueName("dk")
	rt := newDocker(t, cloud)

	leftovers := func(t *testing.T) []string { return engineLeftovers(t, cli, cloud, prefix) }
	t.Cleanup(func() {
		// Last line of defence: report and remove anything the subtests left.
		for _, name := range engineLeftovers(t, cli, cloud, prefix) {
			t.Errorf("container %s left behind", name)
			_ = cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		// The images came from this test's registry (a new port each run):
		// drop them so runs do not pile up images on the engine.
		for _, ref := range []string{v1, v2} {
			if _, err := cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Logf("remove image %s: %v", ref, err)
			}
		}
	})

	t.Run("conformance", func(t *testing.T) {
		runtimetest.Conformance(t, rt, runtimetest.Case{
			Image: v1, Image2: v2, Version: "v1", Version2: "v2",
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

	if left := engineLeftovers(t, cli, cloud, prefix); len(left) != 0 {
		t.Errorf("containers left: %v", left)
	}
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

// engineLeftovers asks the engine itself for drift-owned containers of this
// cloud or with this name prefix.
func engineLeftovers(t *testing.T, cli *client.Client, cloud, prefix string) []string {
	t.Helper()
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", runtime.LabelOwned+"=true"))})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return nil
	}
	var out []string
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if c.Labels[runtime.LabelCloud] == runtime.LabelValue(cloud) || strings.HasPrefix(name, prefix) {
			out = append(out, name)
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
