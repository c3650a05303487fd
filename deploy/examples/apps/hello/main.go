// Command hello is drift's example service: a static HTTP server that says
// which cloud serves it. It listens on $PORT (default 8080) and is built
// with CGO_ENABLED=0 so it runs in a FROM-scratch image and as a process.
// $HOST, when set, is the address to bind (the process runtime passes
// 127.0.0.1; in a container it stays unset).
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// failEvery, set at build time with -ldflags "-X main.failEvery=N", makes /
// answer 500 to every Nth request: a release broken for some of its users,
// which a rollout's analysis must catch.
var failEvery = ""

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	// READY_AFTER (a duration) delays readiness, to stand for a slow start.
	readyAfter, _ := time.ParseDuration(os.Getenv("READY_AFTER"))
	addr := net.JoinHostPort(os.Getenv("HOST"), port)
	log.Printf("hello %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, newMux(time.Now(), readyAfter)))
}

// newMux serves /healthz (ready once readyAfter has passed), / (who
// serves) and /metrics: the answers of / by status code, in Prometheus'
// text format, which a rollout's analysis can query.
func newMux(started time.Time, readyAfter time.Duration) *http.ServeMux {
	host, _ := os.Hostname()
	every, _ := strconv.ParseInt(failEvery, 10, 64)
	var served, failed atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		n, bad := served.Load(), failed.Load()
		fmt.Fprintf(w, "# HELP hello_requests_total Requests of / answered, by status code.\n# TYPE hello_requests_total counter\n")
		fmt.Fprintf(w, "hello_requests_total{code=\"200\"} %d\nhello_requests_total{code=\"500\"} %d\n", n-bad, bad)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(started) < readyAfter {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if n := served.Add(1); every > 0 && n%every == 0 {
			failed.Add(1)
			http.Error(w, "failing on purpose (failEvery)", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"app":     "hello",
			"version": version,
			"cloud":   os.Getenv("DRIFT_CLOUD"),
			"host":    host,
			"arch":    goruntime.GOARCH,
			"uptime":  time.Since(started).Round(time.Millisecond).String(),
		})
	})
	return mux
}
