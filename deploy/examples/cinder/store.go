package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The database schema moves with the releases: release <major> works with
// schema <major>-23 (caracal 24 → 1 … gazpacho 28 → 5). Each step has an
// expand part (db sync: changes every older release tolerates), an online
// part (db online_data_migrations: rewrites rows in batches while the
// service runs) and maybe a contract part (db contract: removes what only
// older releases read; after it they refuse to start).
type step struct {
	schema   int
	change   string
	expand   func(tx *bolt.Tx) error
	online   func(s *store, v *volume) (bool, error) // reports whether v changed
	contract func(v *volume) bool
}

var steps = []step{
	{schema: 1, change: "volumes bucket", expand: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(volumesBucket)
		return err
	}},
	{schema: 2, change: "volumes get a status (added field)", online: func(_ *store, v *volume) (bool, error) {
		if v.Status != "" {
			return false, nil
		}
		v.Status = "available"
		return true, nil
	}},
	{schema: 3, change: "volume name renamed display_name", online: func(_ *store, v *volume) (bool, error) {
		if v.DisplayName != "" || v.Name == "" {
			return false, nil
		}
		v.DisplayName = v.Name
		return true, nil
	}, contract: func(v *volume) bool {
		changed := v.Name != ""
		v.Name = ""
		return changed
	}},
	{schema: 4, change: "attachments bucket (added bucket)", expand: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(attachmentsBucket)
		return err
	}},
	{schema: 5, change: "volumes keep the sha256 of their data (added field)", online: func(s *store, v *volume) (bool, error) {
		if v.Checksum != "" {
			return false, nil
		}
		b, err := os.ReadFile(s.dataPath(v.ID))
		if err != nil {
			return false, fmt.Errorf("volume %s: %w", v.ID, err)
		}
		v.Checksum = checksum(b)
		return true, nil
	}},
}

// latestSchema is the schema of the newest release this binary knows.
var latestSchema = steps[len(steps)-1].schema

var (
	metaBucket        = []byte("meta")
	volumesBucket     = []byte("volumes")
	attachmentsBucket = []byte("attachments")
)

// schemaOf is the schema a release works with.
func schemaOf(version string) int {
	major, _, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 1
	}
	return min(max(n-23, 1), latestSchema)
}

// volume is one row of the volumes bucket; which fields a row has depends
// on the schema of the release that wrote it and on the steps run since.
type volume struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`         // schema 1–2; gone after the contract of 3
	DisplayName string `json:"display_name,omitempty"` // schema 3 on
	Size        int    `json:"size"`
	Status      string `json:"status,omitempty"`   // schema 2 on
	Checksum    string `json:"checksum,omitempty"` // schema 5 on
	Created     string `json:"created"`
}

// name is what a client calls the volume, whichever field holds it.
func (v volume) name() string {
	if v.DisplayName != "" {
		return v.DisplayName
	}
	return v.Name
}

// state is what the meta bucket says: the schema expanded to, the one whose
// online migrations are done, the one contracted to.
type state struct{ Schema, Migrated, Contracted int }

// store is the database (<data>/component.db, bbolt) and the volumes' data
// (<data>/volumes/<id>). Several processes share it — both envs of an
// upgrade and its tasks — so every operation opens the file for its own
// transaction and closes it: bbolt's file lock serializes them.
type store struct {
	dir    string
	schema int // of this release
	mu     sync.Mutex
}

func (s *store) dbPath() string            { return filepath.Join(s.dir, "component.db") }
func (s *store) dataPath(id string) string { return filepath.Join(s.dir, "volumes", id) }

// do runs fn in one transaction on the database.
func (s *store) do(write bool, fn func(tx *bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(s.dir, "volumes"), 0o755); err != nil {
		return err
	}
	db, err := bolt.Open(s.dbPath(), 0o600, &bolt.Options{Timeout: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	if write {
		return db.Update(fn)
	}
	return db.View(fn)
}

func readState(tx *bolt.Tx) state {
	b := tx.Bucket(metaBucket)
	if b == nil {
		return state{}
	}
	get := func(k string) int { n, _ := strconv.Atoi(string(b.Get([]byte(k)))); return n }
	return state{Schema: get("schema"), Migrated: get("migrated"), Contracted: get("contracted")}
}

func writeState(tx *bolt.Tx, st state) error {
	b, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	for k, v := range map[string]int{"schema": st.Schema, "migrated": st.Migrated, "contracted": st.Contracted} {
		if err := b.Put([]byte(k), []byte(strconv.Itoa(v))); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) state() (st state, err error) {
	err = s.do(false, func(tx *bolt.Tx) error { st = readState(tx); return nil })
	return st, err
}

// errSchema marks a database this release cannot use as it is.
var errSchema = errors.New("database schema")

// open is what a service does at start: a new database is made at this
// release's schema; an existing one must be expanded to it (db sync) and
// not contracted past it.
func (s *store) open() (state, error) {
	var st state
	err := s.do(true, func(tx *bolt.Tx) error {
		st = readState(tx)
		if st.Schema == 0 {
			for _, p := range steps {
				if p.schema <= s.schema && p.expand != nil {
					if err := p.expand(tx); err != nil {
						return err
					}
				}
			}
			st = state{Schema: s.schema, Migrated: s.schema, Contracted: s.schema}
			return writeState(tx, st)
		}
		return nil
	})
	switch {
	case err != nil:
		return st, err
	case st.Schema < s.schema:
		return st, fmt.Errorf("%w %d is older than this release's %d: run `db sync` with this release first", errSchema, st.Schema, s.schema)
	case st.Contracted > s.schema:
		return st, fmt.Errorf("%w was contracted to %d: this release (schema %d) can no longer use it", errSchema, st.Contracted, s.schema)
	}
	return st, nil
}

// sync expands the schema to this release's.
func (s *store) sync() (state, error) {
	var st state
	err := s.do(true, func(tx *bolt.Tx) error {
		st = readState(tx)
		switch {
		case st.Schema == 0:
			return fmt.Errorf("%w: no database in %s: a service of the component makes it", errSchema, s.dir)
		case st.Schema > s.schema:
			return fmt.Errorf("%w %d is newer than this release's %d", errSchema, st.Schema, s.schema)
		case s.schema-st.Migrated > 2:
			return fmt.Errorf("%w: online data migrations are done to %d; this release (%d) needs them done to %d at least", errSchema, st.Migrated, s.schema, s.schema-2)
		}
		for _, p := range steps {
			if p.schema > st.Schema && p.schema <= s.schema && p.expand != nil {
				if err := p.expand(tx); err != nil {
					return err
				}
			}
		}
		st.Schema = max(st.Schema, s.schema)
		return writeState(tx, st)
	})
	return st, err
}

// migrate runs the online data migrations of every expanded step in
// batches of batch rows, each in its own transaction, so services keep
// going between them and a migration cut short resumes where it stopped.
// It stops after maxCount rows (0: no limit) and reports how many rows it
// changed and whether any remain.
func (s *store) migrate(batch, maxCount int, pause time.Duration) (changed int, more bool, err error) {
	st, err := s.state()
	if err != nil {
		return 0, false, err
	}
	if st.Migrated >= st.Schema {
		return 0, false, nil
	}
	var todo []step
	for _, p := range steps {
		if p.schema > st.Migrated && p.schema <= st.Schema && p.online != nil {
			todo = append(todo, p)
		}
	}
	after, seen := "", 0
	for {
		n, last := 0, ""
		err := s.do(true, func(tx *bolt.Tx) error {
			c := tx.Bucket(volumesBucket).Cursor()
			k, raw := c.First()
			if after != "" {
				k, raw = c.Seek([]byte(after))
				if k != nil && string(k) == after {
					k, raw = c.Next()
				}
			}
			for ; k != nil && n < batch; k, raw = c.Next() {
				var v volume
				if err := json.Unmarshal(raw, &v); err != nil {
					return fmt.Errorf("volume %s: %w", k, err)
				}
				dirty := false
				for _, p := range todo {
					ch, err := p.online(s, &v)
					if err != nil {
						return err
					}
					dirty = dirty || ch
				}
				if dirty {
					if err := putVolume(tx, v); err != nil {
						return err
					}
					changed++
				}
				n, last = n+1, string(k)
			}
			return nil
		})
		if err != nil {
			return changed, true, err
		}
		seen += n
		if n < batch {
			break
		}
		after = last
		if maxCount > 0 && seen >= maxCount {
			return changed, true, nil
		}
		time.Sleep(pause)
	}
	return changed, false, s.do(true, func(tx *bolt.Tx) error {
		st := readState(tx)
		st.Migrated = st.Schema
		return writeState(tx, st)
	})
}

// contract removes what releases before this one read, once no service of
// them runs; a row an older service wrote after the online migrations is
// migrated first. It contracts the steps up to this release's schema, also
// when a later release expanded the schema further (its upgrade failed).
func (s *store) contract() (state, error) {
	var st state
	err := s.do(true, func(tx *bolt.Tx) error {
		st = readState(tx)
		if st.Schema < s.schema {
			return fmt.Errorf("%w %d is older than this release's %d: run `db sync` first", errSchema, st.Schema, s.schema)
		}
		b := tx.Bucket(volumesBucket)
		var rows []volume
		err := b.ForEach(func(_, raw []byte) error {
			var v volume
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			rows = append(rows, v)
			return nil
		})
		if err != nil {
			return err
		}
		for _, v := range rows {
			dirty := false
			for _, p := range steps {
				if p.schema <= st.Contracted || p.schema > s.schema {
					continue
				}
				if p.online != nil {
					ch, err := p.online(s, &v)
					if err != nil {
						return err
					}
					dirty = dirty || ch
				}
				if p.contract != nil {
					dirty = p.contract(&v) || dirty
				}
			}
			if dirty {
				if err := putVolume(tx, v); err != nil {
					return err
				}
			}
		}
		st.Contracted = s.schema
		return writeState(tx, st)
	})
	return st, err
}

func putVolume(tx *bolt.Tx, v volume) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(volumesBucket).Put([]byte(v.ID), raw)
}

// create writes a volume as this release writes it: every field its schema
// has, and the old name as long as older releases may still read it.
func (s *store) create(id, name string, data []byte) (volume, error) {
	v := volume{ID: id, Size: len(data), Created: time.Now().UTC().Format(time.RFC3339Nano)}
	if err := writeFile(s.dataPath(id), data); err != nil {
		return v, err
	}
	err := s.do(true, func(tx *bolt.Tx) error {
		st := readState(tx)
		if s.schema < 3 || st.Contracted < 3 {
			v.Name = name
		}
		if s.schema >= 2 {
			v.Status = "available"
		}
		if s.schema >= 3 {
			v.DisplayName = name
		}
		if s.schema >= 5 {
			v.Checksum = checksum(data)
		}
		return putVolume(tx, v)
	})
	return v, err
}

func (s *store) list() ([]volume, error) {
	var out []volume
	err := s.do(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(volumesBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, raw []byte) error {
			var v volume
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

func (s *store) get(id string) (v volume, found bool, err error) {
	err = s.do(false, func(tx *bolt.Tx) error {
		b := tx.Bucket(volumesBucket)
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(id))
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &v)
	})
	return v, found, err
}

func (s *store) remove(id string) error {
	err := s.do(true, func(tx *bolt.Tx) error { return tx.Bucket(volumesBucket).Delete([]byte(id)) })
	if err != nil {
		return err
	}
	if err := os.Remove(s.dataPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeFile writes a file whole or not at all.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
