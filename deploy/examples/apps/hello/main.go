// Command hello is drift's example service: a static HTTP server that says
// which cloud serves it. It listens on $PORT (default 8080) and is built
// with CGO_ENABLED=0 so it runs in a FROM-scratch image and as a process.
// $HOST, when set, is the address to bind (the process runtime passes
// 127.0.0.1; in a container it stays unset).
package main

import (
	"encoding/json"
	"log"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	started := time.Now()
	host, _ := os.Hostname()
	// READY_AFTER (a duration) delays readiness, to stand for a slow start.
	readyAfter, _ := time.ParseDuration(os.Getenv("READY_AFTER"))
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(started) < readyAfter {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
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
	addr := net.JoinHostPort(os.Getenv("HOST"), port)
	log.Printf("hello %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
