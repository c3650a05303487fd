package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// recordFile is the name of an instance's record inside its directory.
const recordFile = "instance.json"

// record is what the runtime knows about one instance: written atomically to
// <dir>/<name>/instance.json as soon as a process has a pid, so a worker
// that restarts (or crashes mid-deploy) finds it again. In the one-service
// form it describes the instance's one process; a project's record has one
// record per service's process in Procs (Service, PID to Argv and Probe
// set) and none at the top level. A project record without processes is
// an instance of which only volumes are left.
type record struct {
	Name       string            `json:"name,omitempty"`
	Service    string            `json:"service,omitempty"`
	PID        int               `json:"pid,omitempty"`
	StartTicks uint64            `json:"startTicks,omitempty"` // /proc/<pid>/stat starttime: tells a reused pid apart
	Started    time.Time         `json:"started,omitzero"`
	Port       int               `json:"port,omitempty"` // loopback port passed in $PORT
	Image      string            `json:"image,omitempty"`
	Digest     string            `json:"digest,omitempty"` // what Image resolved to (index or manifest digest)
	Labels     map[string]string `json:"labels,omitempty"`
	SpecHash   string            `json:"specHash,omitempty"`
	Health     string            `json:"health,omitempty"`
	Probe      string            `json:"probe,omitempty"`
	Argv       []string          `json:"argv,omitempty"`

	Project bool           `json:"project,omitempty"`
	Procs   []*record      `json:"procs,omitempty"` // in start order
	Order   []string       `json:"order,omitempty"` // the services in the spec's order
	Serve   string         `json:"serve,omitempty"`
	State   *runtime.State `json:"state,omitempty"`
	// Spec is what Deploy was given (on the top-level record), so a kept
	// (stopped) instance starts again as it was.
	Spec *runtime.Spec `json:"spec,omitempty"`
}

func (rec *record) validate() error {
	switch {
	case rec.Name == "":
		return errors.New("no name")
	case rec.SpecHash == "":
		return errors.New("no spec hash")
	case rec.Project:
		for _, p := range rec.Procs {
			if err := p.validateProc(); err != nil {
				return fmt.Errorf("service %q: %w", p.Service, err)
			}
		}
		return nil
	}
	return rec.validateProc()
}

func (rec *record) validateProc() error {
	switch {
	case rec.PID <= 0:
		return fmt.Errorf("bad pid %d", rec.PID)
	case rec.Port <= 0 || rec.Port > 65535:
		return fmt.Errorf("bad port %d", rec.Port)
	}
	return nil
}

// procs are the instance's processes: itself in the one-service form.
func (rec *record) procs() []*record {
	switch {
	case rec == nil:
		return nil
	case rec.Project:
		return rec.Procs
	}
	return []*record{rec}
}

// service is the service a process runs, as the probes need it.
func (rec *record) service() runtime.Service {
	return runtime.Service{Name: rec.Service, Port: rec.Port, Health: rec.Health, Probe: rec.Probe}
}

// readRecord reads the record in instDir; (nil, nil) when there is none.
func readRecord(instDir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(instDir, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("record %s: %w", filepath.Join(instDir, recordFile), err)
	}
	if err := rec.validate(); err != nil {
		return nil, fmt.Errorf("record %s: %w", filepath.Join(instDir, recordFile), err)
	}
	return &rec, nil
}

// writeRecord replaces the record in instDir atomically (temporary file,
// fsync, rename), so a reader sees the old record or the new one, never a
// torn one.
func writeRecord(instDir string, rec *record) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(instDir, "."+recordFile+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(instDir, recordFile)); err != nil {
		return err
	}
	if d, err := os.Open(instDir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
