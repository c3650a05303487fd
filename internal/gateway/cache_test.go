package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgedrift/drift/internal/repo"
)

// cachedPair runs a real repository (counting blob downloads, optionally
// corrupting them) behind a gateway pair with a cache.
type cachedPair struct {
	pair   Pair
	mgmt   *Management
	admin  *repo.Client
	blobs  atomic.Int64
	mangle atomic.Bool
}

func newCachedPair(t *testing.T) *cachedPair {
	t.Helper()
	cp := &cachedPair{}
	srv, err := repo.New(repo.Options{Dir: t.TempDir(), AdminToken: "admin", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/blob") {
			cp.blobs.Add(1)
			if cp.mangle.Load() {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				b[0] ^= 0xff
				w.Header().Set(repo.HeaderSHA256, rec.Header().Get(repo.HeaderSHA256))
				w.Write(b)
				return
			}
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); srv.Close() })
	cp.mgmt, err = NewManagement(ManagementOptions{Repo: hs.URL, Secret: secret, CacheDir: t.TempDir(), VMRPS: 1e6, VMBurst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	node, err := NewNode(t.TempDir(), cp.mgmt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	if cp.pair, err = node.Ensure(PairConfig{Tenant: "acme", Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	cp.admin = &repo.Client{URL: hs.URL, Token: "admin"}
	return cp
}

func (cp *cachedPair) push(t *testing.T, name string, size int, o repo.PushOptions) ([]byte, string) {
	t.Helper()
	blob := make([]byte, size)
	rand.Read(blob)
	s := sha256.Sum256(blob)
	sum := hex.EncodeToString(s[:])
	if _, err := cp.admin.Push(context.Background(), repo.Ref{Name: name, Version: "1", Platform: "linux/amd64"}, sum, bytes.NewReader(blob), o); err != nil {
		t.Fatal(err)
	}
	return blob, sum
}

func (cp *cachedPair) get(t *testing.T, name string) (int, []byte, string) {
	t.Helper()
	resp, err := http.Get("http://" + cp.pair.Address + "/v1/packages/" + name + "/1/linux/amd64/blob")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get(repo.HeaderSHA256)
}

// 30 VMs download one package at once: it crosses to the repository once.
func TestCacheFetchesEachBlobOnce(t *testing.T) {
	cp := newCachedPair(t)
	blob, sum := cp.push(t, "tool", 512<<10, repo.PushOptions{Tenants: []string{"acme"}})
	var wg sync.WaitGroup
	errs := make(chan string, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, announced := cp.get(t, "tool")
			if code != 200 || !bytes.Equal(body, blob) || announced != sum {
				errs <- http.StatusText(code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("download: %s", e)
	}
	st := cp.mgmt.Cache().Stats()
	if cp.blobs.Load() != 1 || st.Misses != 1 || st.Hits != 29 || st.Fetched != int64(len(blob)) {
		t.Fatalf("repository served %d blobs; cache %+v", cp.blobs.Load(), st)
	}
}

// The repository decides visibility on every download, cached or not; a
// blob that does not match its announced sha256 is not kept.
func TestCacheKeepsVisibilityAndIntegrity(t *testing.T) {
	cp := newCachedPair(t)
	cp.push(t, "theirs", 1024, repo.PushOptions{Tenants: []string{"globex"}})
	if code, body, _ := cp.get(t, "theirs"); code != http.StatusNotFound || cp.blobs.Load() != 0 {
		t.Fatalf("another tenant's package: %d %s (repository sent %d blobs)", code, body, cp.blobs.Load())
	}
	cp.mangle.Store(true)
	cp.push(t, "mine", 1024, repo.PushOptions{Tenants: []string{"acme"}})
	if code, _, _ := cp.get(t, "mine"); code != http.StatusBadGateway {
		t.Fatalf("corrupted upstream blob: %d", code)
	}
	entries, _ := os.ReadDir(cp.mgmt.Cache().dir)
	for _, e := range entries {
		if e.Name() != "tmp" {
			t.Fatalf("kept %s", e.Name())
		}
	}
	cp.mangle.Store(false)
	if code, _, _ := cp.get(t, "mine"); code != 200 {
		t.Fatalf("after the repository recovered: %d", code)
	}
}

func TestCacheEvictsTheOldest(t *testing.T) {
	c, err := NewCache(t.TempDir(), 3000)
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	for i := 0; i < 4; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 1000)
		s := sha256.Sum256(b)
		sum := hex.EncodeToString(s[:])
		sums = append(sums, sum)
		f, err := c.Open(sum, 1000, func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := os.Stat(c.path(sums[0])); !os.IsNotExist(err) {
		t.Fatal("the oldest blob is still there")
	}
	for _, s := range sums[1:] {
		if _, err := os.Stat(c.path(s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Open("../../etc/passwd", 1, nil); err == nil {
		t.Fatal("a path as a digest")
	}
}

// Each VM has its own limit besides its tenant's: one busy VM does not
// starve another.
func TestRateLimitPerVM(t *testing.T) {
	up := &upstream{}
	hs := httptest.NewServer(up)
	t.Cleanup(hs.Close)
	mgmt, _ := NewManagement(ManagementOptions{Repo: hs.URL, Secret: secret, RPS: 1000, Burst: 1000, VMRPS: 0.001, VMBurst: 2})
	node, _ := NewNode(t.TempDir(), mgmt, nil)
	t.Cleanup(node.Close)
	p, err := node.Ensure(PairConfig{Tenant: "acme", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	from := func(src string) map[int]int {
		hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}}
		codes := map[int]int{}
		for i := 0; i < 3; i++ {
			resp, err := hc.Get("http://" + p.Address + "/v1/packages")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes[resp.StatusCode]++
		}
		return codes
	}
	for _, vm := range []string{"127.0.0.2", "127.0.0.3"} {
		if codes := from(vm); codes[200] != 2 || codes[429] != 1 {
			t.Fatalf("%s: %v, want 2×200 then 1×429", vm, codes)
		}
	}
}
