// Command web is the front of drift's two-service example app
// (deploy/examples/apps/counter): the service users reach. It keeps nothing
// itself: every request asks the store, which it reaches by its service
// name (STORE_URL, default http://store:8081), the way compose services
// reach each other.
//
// GET / answers {"app":"counter","cloud":…,"count":N}; POST /count adds one
// and answers the same. It listens on $PORT (default 8080) at $HOST (empty:
// every address). Built with CGO_ENABLED=0 it runs in a FROM-scratch image
// and as a process.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	store := os.Getenv("STORE_URL")
	if store == "" {
		store = "http://store:8081"
	}
	addr := net.JoinHostPort(os.Getenv("HOST"), port)
	log.Printf("web %s listening on %s, store at %s", version, addr, store)
	log.Fatal(http.ListenAndServe(addr, newMux(store, os.Getenv("DRIFT_CLOUD"))))
}

var client = &http.Client{Timeout: 5 * time.Second}

// newMux serves /healthz, / and POST /count, asking the store at storeURL.
func newMux(storeURL, cloud string) *http.ServeMux {
	storeURL = strings.TrimRight(storeURL, "/")
	answer := func(w http.ResponseWriter, method, path string) {
		req, err := http.NewRequest(method, storeURL+path, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var st struct {
			Count int `json:"count"`
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			http.Error(w, fmt.Sprintf("store: %s: %s", resp.Status, b), http.StatusBadGateway)
			return
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"app": "counter", "version": version, "cloud": cloud, "count": st.Count})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { answer(w, http.MethodGet, "/state") })
	mux.HandleFunc("POST /count", func(w http.ResponseWriter, r *http.Request) { answer(w, http.MethodPost, "/incr") })
	return mux
}
