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
// <dir>/<name>/instance.json as soon as the process has a pid, so a worker
// that restarts (or crashes mid-deploy) finds it again.
type record struct {
	Name       string            `json:"name"`
	PID        int               `json:"pid"`
	StartTicks uint64            `json:"startTicks"` // /proc/<pid>/stat starttime: tells a reused pid apart
	Started    time.Time         `json:"started"`
	Port       int               `json:"port"` // loopback port passed in $PORT
	Image      string            `json:"image"`
	Digest     string            `json:"digest"` // what Image resolved to (index or manifest digest)
	Labels     map[string]string `json:"labels"`
	SpecHash   string            `json:"specHash"`
	Health     string            `json:"health,omitempty"`
	Argv       []string          `json:"argv"`
	// Spec is what Deploy was given, so a kept (stopped) instance starts
	// again as it was.
	Spec *runtime.Spec `json:"spec,omitempty"`
}

func (rec *record) validate() error {
	switch {
	case rec.Name == "":
		return errors.New("no name")
	case rec.PID <= 0:
		return fmt.Errorf("bad pid %d", rec.PID)
	case rec.Port <= 0 || rec.Port > 65535:
		return fmt.Errorf("bad port %d", rec.Port)
	case rec.SpecHash == "":
		return errors.New("no spec hash")
	}
	return nil
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
