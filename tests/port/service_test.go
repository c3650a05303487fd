package port

import (
	"context"
	"debug/elf"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerimage "github.com/docker/docker/api/types/image"
	dockerclient "github.com/docker/docker/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// counter is a service on bolt v1.3.1 (undefined: maxMapSize for loong64,
// fixed by the seed's patch): it counts visits in a bolt file in its
// working directory (a FROM-scratch image has no /tmp) and answers on
// $PORT.
const counterGoMod = `module example.com/counter

go 1.21

require github.com/boltdb/bolt v1.3.1
`

const counterMain = `package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"

	"github.com/boltdb/bolt"
)

func main() {
	db, err := bolt.Open("counter.db", 0o600, nil)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var n int
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("visits"))
			if err != nil {
				return err
			}
			n, _ = strconv.Atoi(string(b.Get([]byte("n"))))
			n++
			return b.Put([]byte("n"), []byte(strconv.Itoa(n)))
		})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "visits: %d\n", n)
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
`

// serviceTopology has a Docker cloud of arch loong64 and one of amd64.
const serviceTopology = `name: port-service
clouds:
  - {id: center, tier: center}
  - {id: fog-loong, tier: fog, parent: center, arch: loong64, runtime: {kind: docker}}
  - {id: fog-amd, tier: fog, parent: center, arch: amd64, runtime: {kind: docker}}
`

// The ported service runs on a Docker cloud of arch loong64 under binfmt
// emulation and answers HTTP; the container's binary is linux/loong64; an
// amd64 cloud refuses the image; everything made is removed.
func TestPortedServiceRunsOnALoong64Cloud(t *testing.T) {
	requireTool(t, "qemu-loongarch64-static")
	harness.Binfmt(t, "loongarch64")
	docker := harness.Docker(t)
	_, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	topo, err := topology.Parse([]byte(serviceTopology))
	if err != nil {
		t.Fatal(err)
	}
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config { return cl.Runtime })
	dir := makeModule(t, "counter", map[string]string{"go.mod": counterGoMod, "main.go": counterMain})

	repo := reg.Host() + "/port/counter"
	t.Cleanup(func() { removeEverything(t, ws, docker, repo, "port/counter/loong64") })
	r, err := portAndFollow(t, c, workflows.PortInput{Repo: dir, Service: &workflows.PortService{Cloud: "fog-loong", Port: 8080, Health: "/healthz"}}, 20*time.Minute)
	if err != nil || r.Status != workflows.PortDone {
		t.Fatalf("port: %v\n%+v", err, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := r.Service
	if s == nil || s.Cloud != "fog-loong" || !strings.Contains(s.Verified, "answered 200") {
		t.Fatalf("service %+v", s)
	}
	// Traffic through the instance: state kept in the bolt file.
	for i, want := range []string{"visits: 1\n", "visits: 2\n"} {
		if code, _, body := harness.HTTPGet(t, s.Endpoint.URL+"/"); code != 200 || body != want {
			t.Fatalf("GET %d: %d %q, want %q", i, code, body, want)
		}
	}

	// The container runs the linux/loong64 image, and its binary is LoongArch.
	cs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", runtime.LabelInstance+"="+s.Instance))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers %+v (%v)", cs, err)
	}
	img, err := docker.ImageInspect(ctx, cs[0].ImageID)
	if err != nil || img.Architecture != "loong64" || img.Os != "linux" {
		t.Fatalf("image %s/%s (%v)", img.Os, img.Architecture, err)
	}
	bin := copyFromContainer(t, docker, cs[0].ID, "/app/counter", filepath.Join(t.TempDir(), "counter"))
	if f, err := elf.Open(bin); err != nil || f.Machine != elf.EM_LOONGARCH {
		t.Errorf("the container's binary is not for LoongArch: %v", err)
	} else {
		f.Close()
	}

	// An amd64 cloud refuses the image, before anything runs.
	amd := &activities.Cloud{ID: "fog-amd", Arch: "amd64", Runtime: ws.Runtimes["fog-amd"]}
	_, err = amd.DeployInstance(ctx, activities.DeployRequest{Name: "refused", Spec: runtime.Spec{Image: r.Image, Port: 8080}})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeWrongPlatform || !strings.Contains(err.Error(), "linux/amd64") {
		t.Fatalf("amd64 cloud: %v", err)
	}
	if st, _ := ws.Runtimes["fog-amd"].Status(ctx, "refused"); st.Exists {
		t.Error("a refused image was deployed")
	}
}

// removeEverything destroys the port's instances and the images of repo
// the engine pulled, and proves nothing of them is left.
func removeEverything(t *testing.T, ws *workerhost.Workers, docker *dockerclient.Client, repo, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := ws.Runtimes["fog-loong"]
	found, err := rt.List(ctx, map[string]string{runtime.LabelWorkflow: id})
	if err != nil {
		t.Error(err)
	}
	for _, in := range found {
		if err := rt.Destroy(ctx, in.Name); err != nil {
			t.Error(err)
		}
	}
	pulled := func() []string {
		imgs, err := docker.ImageList(ctx, dockerimage.ListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, img := range imgs {
			for _, d := range append(img.RepoDigests, img.RepoTags...) {
				if strings.HasPrefix(d, repo+"@") || strings.HasPrefix(d, repo+":") {
					ids = append(ids, img.ID)
					break
				}
			}
		}
		return ids
	}
	for _, img := range pulled() {
		if _, err := docker.ImageRemove(ctx, img, dockerimage.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("remove image: %v", err)
		}
	}
	if left := pulled(); len(left) > 0 {
		t.Errorf("images of %s left: %v", repo, left)
	}
	owned := filters.NewArgs(filters.Arg("label", runtime.LabelWorkflow+"="+runtime.LabelValue(id)))
	if cs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: owned}); err != nil || len(cs) != 0 {
		t.Errorf("containers of %s left: %+v (%v)", id, cs, err)
	}
}

// copyFromContainer copies the file at path out of a container to dst.
func copyFromContainer(t *testing.T, docker *dockerclient.Client, id, path, dst string) string {
	t.Helper()
	rc, _, err := docker.CopyFromContainer(context.Background(), id, path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return extractFile(t, rc, filepath.Base(path), dst)
}
