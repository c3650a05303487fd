package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var secret = []byte("shared")

type reported struct {
	in  Instruction
	rep Report
}

func newTestRepo(t *testing.T, maxBlob int64) (*Server, *httptest.Server, *Client, chan reported) {
	t.Helper()
	got := make(chan reported, 4)
	srv, err := New(Options{Dir: t.TempDir(), AdminToken: "admin", Secret: secret, MaxBlob: maxBlob,
		Report: func(_ context.Context, in Instruction, r Report) error { got <- reported{in, r}; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return srv, hs, &Client{URL: hs.URL, Token: "admin"}, got
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func statusOf(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// asTenant sends a request as the management gateway would for tenant.
func asTenant(t *testing.T, method, url, tenant, client string, body io.Reader) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set(HeaderTenant, tenant)
	req.Header.Set(HeaderClient, client)
	req.Header.Set(HeaderSignature, Sign(secret, tenant, client))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestUploadListDownloadDelete(t *testing.T) {
	srv, hs, c, _ := newTestRepo(t, 1<<20)
	ctx := context.Background()
	blob := []byte("package bytes")
	ref := Ref{Name: "tool", Version: "1.2.3", Platform: "linux/amd64"}
	p, err := c.Push(ctx, ref, digest(blob), bytes.NewReader(blob), PushOptions{Tenants: []string{"acme"}, Hook: "install.sh"})
	if err != nil || p.Size != int64(len(blob)) || p.SHA256 != digest(blob) {
		t.Fatalf("push: %+v %v", p, err)
	}
	// Same content again is fine; other content under the same ref is not.
	if _, err := c.Push(ctx, ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true}); err != nil {
		t.Fatalf("re-push: %v", err)
	}
	other := []byte("other")
	if _, err := c.Push(ctx, ref, digest(other), bytes.NewReader(other), PushOptions{Public: true}); statusOf(err) != http.StatusConflict {
		t.Fatalf("conflicting push: %v", err)
	}
	// A second ref sharing the blob keeps it alive when the first goes.
	twin := Ref{Name: "tool", Version: "1.2.3", Platform: "linux/loong64"}
	if _, err := c.Push(ctx, twin, digest(blob), bytes.NewReader(blob), PushOptions{Public: true}); err != nil {
		t.Fatal(err)
	}
	ps, err := c.List(ctx)
	if err != nil || len(ps) != 2 {
		t.Fatalf("list: %v %v", ps, err)
	}
	code, body, hdr := asTenant(t, "GET", hs.URL+ref.path()+"/blob", "acme", "10.0.0.2", nil)
	if code != 200 || !bytes.Equal(body, blob) || hdr.Get(HeaderSHA256) != digest(blob) {
		t.Fatalf("download: %d %q %v", code, body, hdr)
	}
	if code, _, _ := asTenant(t, "GET", hs.URL+ref.path()+"/blob", "globex", "10.0.0.3", nil); code != http.StatusNotFound {
		t.Fatalf("another tenant downloaded a private package: %d", code)
	}
	code, body, _ = asTenant(t, "GET", hs.URL+"/v1/packages", "globex", "10.0.0.3", nil)
	if code != 200 || strings.Contains(string(body), "amd64") || !strings.Contains(string(body), "loong64") {
		t.Fatalf("globex's list: %s", body)
	}
	if err := c.Delete(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.store.blobPath(digest(blob))); err != nil {
		t.Fatalf("shared blob removed with one of its refs: %v", err)
	}
	if err := c.Delete(ctx, twin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.store.blobPath(digest(blob))); !os.IsNotExist(err) {
		t.Fatalf("orphan blob kept: %v", err)
	}
	if err := c.Delete(ctx, twin); statusOf(err) != http.StatusNotFound {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	srv, hs, c, _ := newTestRepo(t, 1024)
	ctx := context.Background()
	blob := []byte("x")
	ref := Ref{Name: "ok", Version: "1", Platform: "linux/amd64"}
	big := bytes.Repeat([]byte("b"), 1025)
	for _, tc := range []struct {
		name string
		do   func() error
		want int
	}{
		{"sha256 mismatch", func() error {
			_, err := c.Push(ctx, ref, digest([]byte("y")), bytes.NewReader(blob), PushOptions{Public: true})
			return err
		}, http.StatusUnprocessableEntity},
		{"oversized", func() error {
			_, err := c.Push(ctx, Ref{Name: "big", Version: "1", Platform: "linux/amd64"}, digest(big), bytes.NewReader(big), PushOptions{Public: true})
			return err
		}, http.StatusRequestEntityTooLarge},
		{"oversized stream", func() error {
			_, err := c.Push(ctx, Ref{Name: "big", Version: "1", Platform: "linux/amd64"}, digest(big), io.MultiReader(bytes.NewReader(big)), PushOptions{Public: true})
			return err
		}, http.StatusRequestEntityTooLarge},
		{"no visibility", func() error {
			_, err := c.Push(ctx, ref, digest(blob), bytes.NewReader(blob), PushOptions{})
			return err
		}, http.StatusBadRequest},
		{"hook leaves the package", func() error {
			_, err := c.Push(ctx, ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true, Hook: "../x"})
			return err
		}, http.StatusBadRequest},
		{"wrong token", func() error {
			_, err := (&Client{URL: hs.URL, Token: "wrong"}).List(ctx)
			return err
		}, http.StatusUnauthorized},
	} {
		if got := statusOf(tc.do()); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if code, _, _ := asTenant(t, "PUT", hs.URL+ref.path()+"?public=true&sha256="+digest(blob), "acme", "10.0.0.2", bytes.NewReader(blob)); code != http.StatusForbidden {
		t.Errorf("tenant upload: %d", code)
	}
	tmp, _ := os.ReadDir(filepath.Join(srv.store.dir, "tmp"))
	blobs, _ := os.ReadDir(filepath.Join(srv.store.dir, "blobs"))
	if len(tmp)+len(blobs) != 0 {
		t.Fatalf("refused uploads left %d temp files and %d blobs", len(tmp), len(blobs))
	}
}

func TestNames(t *testing.T) {
	good := []Ref{{"hello", "1.0.0", "linux/amd64"}, {"lib.so-2", "v2.1+b3", "linux/loong64"}}
	bad := []Ref{{"../x", "1", "linux/amd64"}, {"..", "1", "linux/amd64"}, {"a/b", "1", "linux/amd64"}, {".x", "1", "linux/amd64"},
		{"x..y", "1", "linux/amd64"}, {"X", "1", "linux/amd64"}, {"x", "../1", "linux/amd64"}, {"x", "1", "linux"},
		{"x", "1", "linux/../amd64"}, {strings.Repeat("a", 65), "1", "linux/amd64"}, {"", "1", "linux/amd64"}}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%v accepted", r)
		}
	}
	for _, h := range []string{"../x", "/bin/sh", "a/../../b", ".hidden", "a/.b"} {
		if validScript("hook", h) == nil {
			t.Errorf("hook %q accepted", h)
		}
	}
}

// Instructions are per VM; reports are accepted only from the VM the
// instruction names and go to its workflow.
func TestInstructionsAndReports(t *testing.T) {
	_, hs, c, got := newTestRepo(t, 1<<20)
	ctx := context.Background()
	blob := []byte("x")
	ref := Ref{Name: "tool", Version: "1", Platform: "linux/amd64"}
	if _, err := c.Push(ctx, ref, digest(blob), bytes.NewReader(blob), PushOptions{Tenants: []string{"acme"}}); err != nil {
		t.Fatal(err)
	}
	in, err := c.PostInstruction(ctx, Instruction{ID: "install/acme/vm/tool#1", WorkflowID: "install/acme/vm/tool", Tenant: "acme", Client: "10.0.0.2", Package: Package{Ref: ref}})
	if err != nil || in.Package.SHA256 != digest(blob) {
		t.Fatalf("post: %+v %v", in, err)
	}
	if _, err := c.PostInstruction(ctx, Instruction{ID: "i", WorkflowID: "w", Tenant: "globex", Client: "10.0.0.3", Package: Package{Ref: ref}}); statusOf(err) != http.StatusNotFound {
		t.Fatalf("instruction for a tenant that cannot see the package: %v", err)
	}
	if code, body, _ := asTenant(t, "GET", hs.URL+"/v1/instructions", "acme", "10.0.0.9", nil); code != 200 || string(bytes.TrimSpace(body)) != "[]" {
		t.Fatalf("another VM of the tenant sees %d %s", code, body)
	}
	code, body, _ := asTenant(t, "GET", hs.URL+"/v1/instructions", "acme", "10.0.0.2", nil)
	if code != 200 || !strings.Contains(string(body), in.ID) {
		t.Fatalf("instructions: %d %s", code, body)
	}
	rep := `{"instructionId":"install/acme/vm/tool#1","ok":true,"tenant":"globex"}`
	if code, _, _ := asTenant(t, "POST", hs.URL+"/v1/reports", "acme", "10.0.0.9", strings.NewReader(rep)); code != http.StatusNotFound {
		t.Fatalf("report from another VM: %d", code)
	}
	if code, _, _ := asTenant(t, "POST", hs.URL+"/v1/reports", "acme", "10.0.0.2", strings.NewReader(rep)); code != http.StatusAccepted {
		t.Fatalf("report: %d", code)
	}
	r := <-got
	if r.in.WorkflowID != "install/acme/vm/tool" || !r.rep.OK || r.rep.Tenant != "acme" || r.rep.Client != "10.0.0.2" {
		t.Fatalf("delivered %+v", r)
	}
	if code, _, _ := asTenant(t, "POST", hs.URL+"/v1/reports", "acme", "10.0.0.2", strings.NewReader(rep)); code != http.StatusNotFound {
		t.Fatalf("second report of a closed instruction: %d", code)
	}
}

// A report for a workflow that has ended closes the instruction with 410.
func TestReportForEndedWorkflow(t *testing.T) {
	srv, err := New(Options{Dir: t.TempDir(), AdminToken: "admin", Secret: secret,
		Report: func(context.Context, Instruction, Report) error { return ErrWorkflowGone }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c := &Client{URL: hs.URL, Token: "admin"}
	blob := []byte("x")
	ref := Ref{Name: "tool", Version: "1", Platform: "linux/amd64"}
	c.Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true})
	if _, err := c.PostInstruction(context.Background(), Instruction{ID: "w#1", WorkflowID: "w", Tenant: "acme", Client: "10.0.0.2", Package: Package{Ref: ref}}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := asTenant(t, "POST", hs.URL+"/v1/reports", "acme", "10.0.0.2", strings.NewReader(`{"instructionId":"w#1","ok":true}`)); code != http.StatusGone {
		t.Fatalf("status %d", code)
	}
	if open, _ := srv.Store().Instructions("acme", "10.0.0.2"); len(open) != 0 {
		t.Fatalf("instruction still open: %v", open)
	}
}

// Concurrent uploads of different content under one ref: one wins, the
// others conflict, and no losing blob stays behind.
func TestConcurrentConflictingUploads(t *testing.T) {
	srv, _, c, _ := newTestRepo(t, 1<<20)
	ref := Ref{Name: "race", Version: "1", Platform: "linux/amd64"}
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			blob := []byte(strings.Repeat("x", i+1))
			_, err := c.Push(context.Background(), ref, digest(blob), bytes.NewReader(blob), PushOptions{Public: true})
			errs <- err
		}()
	}
	ok := 0
	for i := 0; i < n; i++ {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case statusOf(err) != http.StatusConflict:
			t.Errorf("upload: %v", err)
		}
	}
	blobs, _ := os.ReadDir(filepath.Join(srv.store.dir, "blobs"))
	if ok != 1 || len(blobs) != 1 {
		t.Fatalf("%d uploads won, %d blobs stored; want 1 and 1", ok, len(blobs))
	}
}
