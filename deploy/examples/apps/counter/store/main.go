// Command store is the state store of drift's two-service example app
// (deploy/examples/apps/counter): it keeps a counter in a file of its data
// directory, a named volume, so the count outlives the process. Its state
// endpoint, /state, is what drift moves from one instance to the next: GET
// returns the whole state, PUT replaces it, and PATCH {"base": B, "final":
// F} adds the increments an instance left behind took after B was read
// from it (F is its count at the end of its drain).
//
// It listens on $PORT (default 8081) at $HOST (empty: every address) and
// keeps its state in $DATA_DIR/state.json (default /data). Built with
// CGO_ENABLED=0 it runs in a FROM-scratch image and as a process.
package main

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// State is everything the store keeps.
type State struct {
	Count int `json:"count"`
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8081"
	}
	dir := os.Getenv("DATA_DIR")
	if dir == "" {
		dir = "/data"
	}
	s, err := open(dir)
	if err != nil {
		log.Fatal(err)
	}
	addr := net.JoinHostPort(os.Getenv("HOST"), port)
	log.Printf("store %s listening on %s, state in %s (count %d)", version, addr, s.file, s.state.Count)
	log.Fatal(http.ListenAndServe(addr, s.mux()))
}

// store is the state and the file that holds it.
type store struct {
	file  string
	mu    sync.Mutex
	state State
}

// open reads the state in dir, or starts at zero when there is none.
func open(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &store{file: filepath.Join(dir, "state.json")}
	b, err := os.ReadFile(s.file)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	return s, json.Unmarshal(b, &s.state)
}

// save writes the state atomically: a crash leaves the old file or the new.
func (s *store) save() error {
	b, err := json.Marshal(s.state)
	if err != nil {
		return err
	}
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.file)
}

// mux serves /healthz, /state (GET, PUT, PATCH) and /incr (POST).
func (s *store) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		reply(w, s.state)
	})
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		var st State
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			http.Error(w, "state: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		old := s.state
		s.state = st
		if err := s.save(); err != nil {
			s.state = old
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		reply(w, s.state)
	})
	mux.HandleFunc("PATCH /state", func(w http.ResponseWriter, r *http.Request) {
		var late struct {
			Base  State `json:"base"`
			Final State `json:"final"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&late); err != nil {
			http.Error(w, "late writes: "+err.Error(), http.StatusBadRequest)
			return
		}
		if late.Final.Count < late.Base.Count {
			http.Error(w, "late writes: the final count is below the base", http.StatusBadRequest)
			return
		}
		s.add(w, late.Final.Count-late.Base.Count)
	})
	mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) { s.add(w, 1) })
	return mux
}

// add adds n to the count, keeps it, and answers the state.
func (s *store) add(w http.ResponseWriter, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Count += n
	if err := s.save(); err != nil {
		s.state.Count -= n
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reply(w, s.state)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
