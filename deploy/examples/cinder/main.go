// Command cinder is the example platform component of drift's upgrades: a
// small block-storage service in the manner of OpenStack cinder, released
// at every cinder tag of deploy/examples/releases.yaml. One image per
// release holds this binary, the release file (/etc/component/release.json:
// the component, its version and the dependency libraries of that release)
// and whatever driver plugins were layered on top
// (/etc/component/drivers/*.json).
//
// Its volumes live in $DATA_DIR (default /var/lib/component), which outlives
// an env: a bbolt database whose schema moves with the releases (see
// store.go) and the volumes' data. A release refuses to start on a schema it
// cannot use; the tools an upgrade runs, each with the image of the release
// it upgrades to, are the ones of cinder-status and cinder-manage:
//
//	cinder upgrade check                     # exit 0 success, 1 warning, 2 failure
//	cinder db sync                           # expand the schema to this release's
//	cinder db online_data_migrations [--max-count N]   # exit 1 while rows remain
//	cinder db contract                       # drop what older releases read
//	cinder db version
//
// Served with no arguments: ROLE=api (default) is the volume API; ROLE=volume
// is the volume service, which loads the drivers: one that does not work
// with the running version makes it print a line in $DRIVER_ERROR_FORMAT and
// exit 3, as a real service refuses to start with an incompatible backend
// driver.
//
// Endpoints: GET /healthz (200 once ready, after $READY_AFTER); on the api
// role GET|POST /v1/volumes, GET|DELETE /v1/volumes/{id} and GET
// /v1/volumes/{id}/data; on the volume role POST /verify: create a test
// volume through the driver, read it back, delete it ($VERIFY_DELAY slows it
// down for crash tests).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	version "github.com/hashicorp/go-version"
)

const defaultErrorFormat = "driver {driver} {driver_version} requires {component} {constraint}, running {version}"

// Release is /etc/component/release.json.
type Release struct {
	Component string            `json:"component"`
	Version   string            `json:"version"`
	Libs      map[string]string `json:"libs"`
}

// Driver is a plugin's declaration, /etc/component/drivers/<name>.json.
type Driver struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Components map[string]string `json:"components"` // component → version constraint
	Dir        string            `json:"dir"`        // where its volumes live
}

func main() {
	// Paths are read relative to the working directory, the image's root:
	// "/" in a container, the unpacked image under the process runtime.
	root := "."
	rel, err := readRelease(filepath.Join(root, "etc/component/release.json"))
	if err != nil {
		fail(err)
	}
	s := &store{dir: filepath.Join(root, env("DATA_DIR", "/var/lib/component")), schema: schemaOf(rel.Version)}
	if len(os.Args) > 1 {
		os.Exit(command(s, rel, os.Args[1:]))
	}
	serve(s, rel)
}

// command runs one of the component's tools and returns its exit code.
func command(s *store, rel Release, args []string) int {
	say := func(format string, a ...any) {
		fmt.Printf("%s %s: "+format+"\n", append([]any{rel.Component, rel.Version}, a...)...)
	}
	failed := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	switch strings.Join(args[:min(2, len(args))], " ") {
	case "upgrade check":
		return upgradeCheck(s, rel, os.Stdout)
	case "db sync":
		st, err := s.sync()
		if err != nil {
			return failed(err)
		}
		say("database schema %d (online data migrations done to %d)", st.Schema, st.Migrated)
	case "db online_data_migrations":
		fs := flag.NewFlagSet("online_data_migrations", flag.ContinueOnError)
		maxCount := fs.Int("max-count", 0, "stop after this many rows (0: all)")
		if err := fs.Parse(args[2:]); err != nil {
			return 2
		}
		pause, _ := time.ParseDuration(env("MIGRATION_BATCH_DELAY", "0s"))
		changed, more, err := s.migrate(50, *maxCount, pause)
		if err != nil {
			return failed(err)
		}
		say("%d row(s) migrated", changed)
		if more {
			say("more rows remain")
			return 1
		}
	case "db contract":
		st, err := s.contract()
		if err != nil {
			return failed(err)
		}
		say("database contracted to schema %d", st.Contracted)
	case "db version":
		st, err := s.state()
		if err != nil {
			return failed(err)
		}
		say("schema %d, migrated %d, contracted %d", st.Schema, st.Migrated, st.Contracted)
	default:
		return failed(fmt.Errorf("unknown command %q: want upgrade check, db sync, db online_data_migrations, db contract or db version", strings.Join(args, " ")))
	}
	return 0
}

func serve(s *store, rel Release) {
	role := env("ROLE", "api")
	var drivers []Driver
	if role == "volume" {
		var err error
		if drivers, err = loadDrivers(".", rel); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	if _, err := s.open(); err != nil {
		fail(err)
	}
	readyAt := time.Now()
	if d, err := time.ParseDuration(env("READY_AFTER", "0s")); err == nil {
		readyAt = readyAt.Add(d)
	}
	verifyDelay, _ := time.ParseDuration(env("VERIFY_DELAY", "0s"))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if time.Now().Before(readyAt) {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		st, err := s.state()
		if err != nil {
			reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		reply(w, http.StatusOK, map[string]any{"component": rel.Component, "role": role, "version": rel.Version, "libs": rel.Libs,
			"drivers": drivers, "schema": s.schema, "database": st})
	})
	if role == "api" {
		volumeAPI(mux, s)
	}
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, _ *http.Request) {
		if len(drivers) == 0 {
			reply(w, http.StatusConflict, map[string]string{"error": "no driver loaded"})
			return
		}
		time.Sleep(verifyDelay)
		vol, err := roundTrip(".", drivers[0])
		if err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"driver": drivers[0].Name, "error": err.Error()})
			return
		}
		reply(w, http.StatusOK, map[string]any{"driver": drivers[0].Name, "volume": vol, "created": true, "deleted": true})
	})
	addr := ":" + env("PORT", "8080")
	fmt.Printf("%s %s (%s, schema %d) serving on %s with %d driver(s)\n", rel.Component, rel.Version, role, s.schema, addr, len(drivers))
	// A stop (SIGTERM) first answers every request with "Connection:
	// close" for a while, so clients kept alive on this env reconnect (to
	// wherever the endpoint sends now) after their next answer instead of
	// racing a closed idle connection; then it lets requests under way
	// finish and exits.
	var stopping atomic.Bool
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			w.Header().Set("Connection", "close")
		}
		mux.ServeHTTP(w, r)
	})}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		stopping.Store(true)
		time.Sleep(2 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fail(err)
	}
}

// view is a volume as the API shows it.
type view struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Size     int    `json:"size"`
	Status   string `json:"status,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

func viewOf(v volume) view {
	return view{ID: v.ID, Name: v.name(), Size: v.Size, Status: v.Status, Checksum: v.Checksum}
}

func volumeAPI(mux *http.ServeMux, s *store) {
	mux.HandleFunc("POST /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
			Data string `json:"data"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if req.Name == "" && s.schema >= 3 {
			reply(w, http.StatusBadRequest, map[string]string{"error": "a volume needs a name"})
			return
		}
		id := make([]byte, 8)
		rand.Read(id)
		v, err := s.create("vol-"+hex.EncodeToString(id), req.Name, []byte(req.Data))
		if err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		reply(w, http.StatusCreated, viewOf(v))
	})
	mux.HandleFunc("GET /v1/volumes", func(w http.ResponseWriter, _ *http.Request) {
		vols, err := s.list()
		if err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		out := []view{}
		for _, v := range vols {
			out = append(out, viewOf(v))
		}
		reply(w, http.StatusOK, out)
	})
	one := func(w http.ResponseWriter, r *http.Request) (volume, bool) {
		v, found, err := s.get(r.PathValue("id"))
		switch {
		case err != nil:
			reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		case !found:
			reply(w, http.StatusNotFound, map[string]string{"error": "no volume " + r.PathValue("id")})
		}
		return v, err == nil && found
	}
	mux.HandleFunc("GET /v1/volumes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if v, ok := one(w, r); ok {
			reply(w, http.StatusOK, viewOf(v))
		}
	})
	mux.HandleFunc("GET /v1/volumes/{id}/data", func(w http.ResponseWriter, r *http.Request) {
		v, ok := one(w, r)
		if !ok {
			return
		}
		b, err := os.ReadFile(s.dataPath(v.ID))
		if err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	})
	mux.HandleFunc("DELETE /v1/volumes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := one(w, r); !ok {
			return
		}
		if err := s.remove(r.PathValue("id")); err != nil {
			reply(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func readRelease(path string) (Release, error) {
	var rel Release
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &rel)
	}
	if err != nil {
		return rel, fmt.Errorf("release file: %w", err)
	}
	return rel, nil
}

// loadDrivers reads every driver declaration and refuses one that does not
// work with this release.
func loadDrivers(root string, rel Release) ([]Driver, error) {
	files, _ := filepath.Glob(filepath.Join(root, "etc/component/drivers/*.json"))
	running, err := version.NewVersion(rel.Version)
	if err != nil {
		return nil, fmt.Errorf("release version %q: %w", rel.Version, err)
	}
	var out []Driver
	for _, f := range files {
		var d Driver
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &d)
		}
		if err != nil {
			return nil, fmt.Errorf("driver %s: %w", f, err)
		}
		want := d.Components[rel.Component]
		c, err := version.NewConstraint(want)
		if err != nil {
			return nil, fmt.Errorf("driver %s declares %s versions %q: %w", d.Name, rel.Component, want, err)
		}
		if !c.Check(running) {
			return nil, fmt.Errorf("%s", strings.NewReplacer("{driver}", d.Name, "{driver_version}", d.Version,
				"{component}", rel.Component, "{constraint}", want, "{version}", rel.Version).Replace(env("DRIVER_ERROR_FORMAT", defaultErrorFormat)))
		}
		out = append(out, d)
	}
	return out, nil
}

// roundTrip creates a volume through the driver, reads it back and deletes it.
func roundTrip(root string, d Driver) (string, error) {
	dir := filepath.Join(root, d.Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create volume: backend dir: %w", err)
	}
	id := make([]byte, 6)
	rand.Read(id)
	vol := "verify-" + hex.EncodeToString(id)
	path := filepath.Join(dir, vol)
	if err := os.WriteFile(path, []byte(vol), 0o600); err != nil {
		return "", fmt.Errorf("create volume: %w", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != vol {
		return "", fmt.Errorf("read volume back: %q, %v", b, err)
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("delete volume: %w", err)
	}
	return vol, nil
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
