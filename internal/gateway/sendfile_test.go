package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file served over a sendfileListener arrives whole, and so do ranges
// of it (copied, not sent to the file's end) and bodies that are no file.
func TestSendfileOverUnixSocket(t *testing.T) {
	dir := t.TempDir()
	blob := make([]byte, 3<<20+17)
	rand.Read(blob)
	file := filepath.Join(dir, "blob")
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/text" {
			io.Copy(w, bytes.NewReader(blob[:100<<10]))
			return
		}
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "", time.Time{}, f)
	})}
	go srv.Serve(sendfileListener{ln})
	t.Cleanup(func() { srv.Close() })
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, tc := range []struct {
		path, rng string
		want      []byte
	}{
		{"/blob", "", blob},
		{"/blob", "bytes=1000-2999999", blob[1000:3000000]},
		{"/blob", fmt.Sprintf("bytes=%d-", len(blob)-5000), blob[len(blob)-5000:]},
		{"/text", "", blob[:100<<10]},
		{"/blob", "", blob}, // the same connection again
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://gateway"+tc.path, nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("%s %s: %d bytes (want %d), %v", tc.path, tc.rng, len(got), len(tc.want), err)
		}
	}
}
