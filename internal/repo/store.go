package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store errors the HTTP layer maps to statuses.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists with other content")
	ErrTooLarge     = errors.New("too large")
	ErrDigest       = errors.New("sha256 mismatch")
	errBadDigestArg = errors.New("sha256 must be 64 lower-case hex digits")
)

var (
	bucketPackages     = []byte("packages")
	bucketInstructions = []byte("instructions")
	// bucketRetired keeps the sha256 of every removed ref: versions are
	// immutable, so a removed version can come back only with its content.
	bucketRetired = []byte("retired")
)

// Store keeps blobs under dir/blobs/<sha256> and the index in dir/index.db.
// Uploads land in dir/tmp first and are renamed into place only once their
// digest matches, so a refused upload leaves nothing behind.
type Store struct {
	dir     string
	db      *bolt.DB
	maxBlob int64
}

// OpenStore opens (or creates) a store; maxBlob bounds each upload.
func OpenStore(dir string, maxBlob int64) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	// Leftovers of uploads cut short by a crash.
	if tmp, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range tmp {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "index.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPackages, bucketInstructions, bucketRetired} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{dir: dir, db: db, maxBlob: maxBlob}, nil
}

// Close closes the index.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) blobPath(sum string) string { return filepath.Join(s.dir, "blobs", sum) }

func validDigest(sum string) error {
	if len(sum) != 64 {
		return errBadDigestArg
	}
	for _, c := range sum {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return errBadDigestArg
		}
	}
	return nil
}

// Put stores body as p's blob when its sha256 is p.SHA256 and its size at
// most the limit; seal (nil: none) sees the complete entry before it is
// indexed and may refuse it or add signatures. Putting the same content
// again is a no-op; other content under the same ref, even one removed
// since, is ErrExists.
func (s *Store) Put(p Package, body io.Reader, seal func(*Package) error) (Package, error) {
	if err := p.Validate(); err != nil {
		return Package{}, err
	}
	if err := validScript("hook", p.Hook); err != nil {
		return Package{}, err
	}
	if err := validScript("health check", p.Health); err != nil {
		return Package{}, err
	}
	if err := validDigest(p.SHA256); err != nil {
		return Package{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, t := range p.Tenants {
		if err := ValidTenant(t); err != nil {
			return Package{}, err
		}
	}
	if old, err := s.Get(p.Ref); err == nil {
		if old.SHA256 != p.SHA256 {
			return Package{}, fmt.Errorf("%s: %w", p.Ref, ErrExists)
		}
		return old, nil
	}
	if err := s.checkRetired(p); err != nil {
		return Package{}, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return Package{}, err
	}
	defer os.Remove(tmp.Name()) // gone after the rename; removes a refused upload
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, s.maxBlob+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Package{}, err
	}
	if n > s.maxBlob {
		return Package{}, fmt.Errorf("blob over %d bytes: %w", s.maxBlob, ErrTooLarge)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return Package{}, fmt.Errorf("%w: declared %s, received %s", ErrDigest, p.SHA256, got)
	}
	p.Size = n
	p.Uploaded = time.Now().UTC()
	sort.Strings(p.Tenants)
	if seal != nil {
		if err := seal(&p); err != nil {
			return Package{}, err
		}
	}
	if err := os.Rename(tmp.Name(), s.blobPath(p.SHA256)); err != nil {
		return Package{}, err
	}
	// A concurrent upload may have indexed the ref meanwhile: the check
	// and the write happen in one transaction.
	orphan := false
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPackages)
		var old Package
		if getJSON(b, p.key(), &old) == nil {
			if old.SHA256 != p.SHA256 {
				orphan = !referenced(b, p.SHA256)
				return fmt.Errorf("%s: %w", p.Ref, ErrExists)
			}
			p = old
			return nil
		}
		return putJSON(b, p.key(), p)
	})
	if orphan {
		os.Remove(s.blobPath(p.SHA256))
	}
	return p, err
}

// checkRetired refuses content other than what a removed ref had.
func (s *Store) checkRetired(p Package) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if old := tx.Bucket(bucketRetired).Get(p.key()); old != nil && string(old) != p.SHA256 {
			return fmt.Errorf("%s: versions are immutable: it was published with sha256 %s and removed; publish a new version: %w", p.Ref, old, ErrExists)
		}
		return nil
	})
}

// Reseal lets fn change every index entry (adding a signature a new key
// makes); entries fn reports unchanged are not written.
func (s *Store) Reseal(fn func(*Package) bool) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPackages)
		var changed []Package
		if err := b.ForEach(func(_, v []byte) error {
			var p Package
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			if fn(&p) {
				changed = append(changed, p)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, p := range changed {
			if err := putJSON(b, p.key(), p); err != nil {
				return err
			}
		}
		n = len(changed)
		return nil
	})
	return n, err
}

// referenced says whether any indexed package has the blob.
func referenced(b *bolt.Bucket, sum string) bool {
	found := false
	b.ForEach(func(_, v []byte) error {
		var p Package
		if json.Unmarshal(v, &p) == nil && p.SHA256 == sum {
			found = true
		}
		return nil
	})
	return found
}

// Get returns a package's index entry.
func (s *Store) Get(r Ref) (Package, error) {
	var p Package
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketPackages), r.key(), &p) })
	return p, err
}

// List returns every package, sorted by name, version and platform.
func (s *Store) List() ([]Package, error) {
	var out []Package
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPackages).ForEach(func(_, v []byte) error {
			var p Package
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// Open opens a package's blob.
func (s *Store) Open(r Ref) (Package, *os.File, error) {
	p, err := s.Get(r)
	if err != nil {
		return Package{}, nil, err
	}
	f, err := os.Open(s.blobPath(p.SHA256))
	return p, f, err
}

// Delete removes a package and its blob when no other package shares it.
func (s *Store) Delete(r Ref) error {
	var orphan string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPackages)
		var p Package
		if err := getJSON(b, r.key(), &p); err != nil {
			return err
		}
		if err := b.Delete(r.key()); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRetired).Put(r.key(), []byte(p.SHA256)); err != nil {
			return err
		}
		if !referenced(b, p.SHA256) {
			orphan = p.SHA256
		}
		return nil
	})
	if err == nil && orphan != "" {
		err = os.Remove(s.blobPath(orphan))
	}
	return err
}

// PutInstruction records an instruction for a VM.
func (s *Store) PutInstruction(in Instruction) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketInstructions), []byte(in.ID), in) })
}

// Instructions returns the open instructions of one VM.
func (s *Store) Instructions(tenant, client string) ([]Instruction, error) {
	var out []Instruction
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstructions).ForEach(func(_, v []byte) error {
			var in Instruction
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			if in.Tenant == tenant && in.Client == client {
				out = append(out, in)
			}
			return nil
		})
	})
	return out, err
}

// Instruction returns one instruction.
func (s *Store) Instruction(id string) (Instruction, error) {
	var in Instruction
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketInstructions), []byte(id), &in) })
	return in, err
}

// DeleteInstruction withdraws an instruction; a missing one is no error.
func (s *Store) DeleteInstruction(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketInstructions).Delete([]byte(id)) })
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}
