package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

// backends is a runtime whose instances are test servers answering their
// own name.
type backends struct {
	runtime.Runtime
	urls map[string]string
}

func (b backends) Status(_ context.Context, name string) (runtime.Status, error) {
	u, ok := b.urls[name]
	return runtime.Status{Exists: ok, Ready: ok, Endpoint: runtime.Endpoint{URL: u}}, nil
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), err
}

// A client hammering the endpoint across switches sees no failed request,
// and every request after a switch reaches the new instance; a proxy that
// died comes back on the same port; Unroute leaves nothing.
func TestRouteSwitchesWithoutAFailedRequest(t *testing.T) {
	b := backends{urls: map[string]string{}}
	for _, name := range []string{"blue", "green"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(2 * time.Millisecond) // requests are under way at the switch
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		b.urls[name] = srv.URL
	}
	dir := t.TempDir()
	r, err := New(dir, "edge-1", b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	labels := map[string]string{"drift.component": "cinder"}
	rt, err := r.Route(ctx, "cinder", "blue", labels)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Unroute(context.Background(), "cinder") })
	c := &http.Client{Timeout: 5 * time.Second}
	if got, err := get(c, rt.Endpoint.URL); got != "blue" || err != nil {
		t.Fatalf("first route: %q %v", got, err)
	}

	var failed, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(c, rt.Endpoint.URL); err != nil {
					failed.Add(1)
					t.Log(err)
				} else {
					served.Add(1)
				}
			}
		}()
	}
	for i, to := range []string{"green", "blue", "green"} {
		time.Sleep(100 * time.Millisecond)
		got, err := r.Route(ctx, "cinder", to, labels)
		if err != nil || got.Endpoint != rt.Endpoint || got.Instance != to {
			t.Fatalf("switch %d: %+v %v", i, got, err)
		}
		if body, err := get(c, rt.Endpoint.URL); body != to || err != nil {
			t.Fatalf("after switch %d to %s: %q %v", i, to, body, err)
		}
	}
	// Enough requests for the run to mean something, however slow the
	// machine: the clients go on until 20 were served (bounded).
	for deadline := time.Now().Add(time.Minute); served.Load() < 20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || served.Load() < 20 {
		t.Errorf("%d failed of %d", failed.Load(), failed.Load()+served.Load())
	}

	// The proxy dies; routing again brings it back on the same address.
	pid := alive(filepath.Join(r.dir, "cinder"))
	if pid == 0 {
		t.Fatal("no proxy process")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for alive(filepath.Join(r.dir, "cinder")) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := r.Route(ctx, "cinder", "blue", labels); err != nil || got.Endpoint != rt.Endpoint {
		t.Fatalf("after the proxy died: %+v %v", got, err)
	}
	routes, err := r.Routes(ctx, map[string]string{"drift.component": "cinder"})
	if err != nil || len(routes) != 1 || routes[0].Instance != "blue" || routes[0].Labels[runtime.LabelCloud] != "edge-1" {
		t.Fatalf("routes %+v %v", routes, err)
	}
	pid = alive(filepath.Join(r.dir, "cinder"))
	if err := r.Unroute(ctx, "cinder"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "cinder")); !os.IsNotExist(err) {
		t.Errorf("endpoint dir left: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("proxy %d still runs", pid)
	}
	if _, err := get(c, rt.Endpoint.URL); err == nil {
		t.Error("the endpoint still answers")
	}
	if _, err := r.Route(ctx, "cinder", "gone", labels); err == nil {
		t.Error("routed to an instance that does not exist")
	}
}
