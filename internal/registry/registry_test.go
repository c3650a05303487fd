package registry

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// A standalone registry with an htpasswd file refuses anonymous requests
// and wrong passwords, and serves the user the file names.
func TestServeWithHtpasswdAuthenticatesEveryRequest(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("drift:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Serve(context.Background(), Options{Addr: "127.0.0.1:0", Dir: filepath.Join(dir, "data"), Htpasswd: htpasswd})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, c := range []struct {
		user, password string
		want           int
	}{{"", "", http.StatusUnauthorized}, {"drift", "wrong", http.StatusUnauthorized}, {"drift", "s3cret", http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/v2/", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("user %q: %s, want %d", c.user, resp.Status, c.want)
		}
	}
}

func TestServeRefusesAMissingHtpasswdFileAndNoStorage(t *testing.T) {
	if _, err := Serve(context.Background(), Options{Addr: "127.0.0.1:0", Dir: t.TempDir(), Htpasswd: "/nonexistent/htpasswd"}); err == nil {
		t.Fatal("served with an htpasswd file that does not exist")
	}
	if _, err := Serve(context.Background(), Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("served without storage")
	}
}
