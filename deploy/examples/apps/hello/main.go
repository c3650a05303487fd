// Command hello is drift's example service: a static HTTP server that says
// which cloud serves it. It listens on $PORT (default 8080) and is built
// with CGO_ENABLED=0 so it runs in a FROM-scratch image and as a process.
package main

import (
	"encoding/json"
	"log"
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
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
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
	log.Printf("hello %s listening on :%s", version, port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
