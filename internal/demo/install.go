package demo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgedrift/drift/internal/agent"
)

// File is one entry of a package.
type File struct {
	Name string
	Body string
	Mode int64 // 0: 0755
}

// Package builds a .tar.gz package of files. The bytes depend only on the
// files (no times), so building it again gives the same sha256.
func Package(files ...File) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: mode, Size: int64(len(f.Body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(f.Body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// GreeterPackage is the install demo's package: a program saying its version,
// an install hook and a health check that runs the program.
func GreeterPackage(version string) ([]byte, error) {
	return Package(
		File{Name: "bin/hello", Body: "#!/bin/sh\necho hello " + version + " from $(hostname)\n"},
		File{Name: "install.sh", Body: "#!/bin/sh\nset -e\necho \"installed " + version + " (was: ${DRIFT_PREVIOUS:-none})\"\n"},
		File{Name: "health.sh", Body: "#!/bin/sh\nsh bin/hello | grep -q 'hello " + version + "'\n"},
	)
}

// Agents are VM agents run in this process on loopback, each connecting
// from its own address, so the tenant gateway tells them apart.
type Agents struct {
	List   []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// AgentSpec is one agent of StartAgents.
type AgentSpec struct {
	Name    string
	Source  string // 127.0.0.x
	Labels  map[string]string
	Trusted []ed25519.PublicKey
}

// StartAgents runs one agent per spec against gateway, each with its prefix
// under dir/<name>, polling every interval until Stop.
func StartAgents(gateway, dir string, every time.Duration, logger *slog.Logger, specs ...AgentSpec) (*Agents, error) {
	ctx, cancel := context.WithCancel(context.Background())
	as := &Agents{cancel: cancel}
	for _, s := range specs {
		a := &agent.Agent{Gateway: gateway, Prefix: filepath.Join(dir, s.Name), Trusted: s.Trusted, Name: s.Name,
			Labels: s.Labels, Source: s.Source, Logger: logger}
		if err := a.Check(); err != nil {
			cancel()
			return nil, fmt.Errorf("agent %s: %w", s.Name, err)
		}
		as.List = append(as.List, a)
		as.wg.Add(1)
		go func() {
			defer as.wg.Done()
			a.Run(ctx, every)
		}()
	}
	return as, nil
}

// Stop stops every agent and waits for them.
func (as *Agents) Stop() {
	as.cancel()
	as.wg.Wait()
}
