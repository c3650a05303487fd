package registry

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// A standalone registry with an htpasswd file refuses anonymous requests
// and wrong passwords, and serves the user AddUser let in, with the
// credentials it wrote into the Docker config.
func TestAddUserThenServeAuthenticatesEveryRequest(t *testing.T) {
	dir := t.TempDir()
	htpasswd, dockerConfig := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "docker")
	addr := freeAddr(t)
	if err := AddUser(htpasswd, dockerConfig, addr, "drift", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(htpasswd, dockerConfig, addr, "drift", "n3w"); err != nil { // a new password replaces the old
		t.Fatal(err)
	}
	for _, f := range []string{htpasswd, filepath.Join(dockerConfig, "config.json")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	srv, err := Serve(context.Background(), Options{Addr: addr, Dir: filepath.Join(dir, "data"), Htpasswd: htpasswd})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	t.Setenv("DOCKER_CONFIG", dockerConfig)
	reg, err := name.NewRegistry(addr, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.Authorization()
	if err != nil || creds.Username != "drift" || creds.Password != "n3w" {
		t.Fatalf("Docker config credentials %q/%q (%v)", creds.Username, creds.Password, err)
	}
	for _, c := range []struct {
		user, password string
		want           int
	}{{"", "", http.StatusUnauthorized}, {"drift", "s3cret", http.StatusUnauthorized}, {creds.Username, creds.Password, http.StatusOK}} {
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
			t.Errorf("user %q password %q: %s, want %d", c.user, c.password, resp.Status, c.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeRefusesAMissingHtpasswdFileAndNoStorage(t *testing.T) {
	if _, err := Serve(context.Background(), Options{Addr: "127.0.0.1:0", Dir: t.TempDir(), Htpasswd: "/nonexistent/htpasswd"}); err == nil {
		t.Fatal("served with an htpasswd file that does not exist")
	}
	if _, err := Serve(context.Background(), Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("served without storage")
	}
}
