package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Cache keeps package blobs on the network node by sha256, so a fleet
// install crosses the management network once per package: the first VM's
// download fills it (concurrent VMs wait for that one fill), every other VM
// is served from disk. What a VM may see is still asked of the repository
// on every download; only the bytes come from here. A blob is kept only
// once its sha256 and size match what the repository announced.
type Cache struct {
	dir string
	max int64 // bytes kept at most; the oldest go first

	mu    sync.Mutex
	fills map[string]*fill

	hits, misses, fetched atomic.Int64
}

type fill struct {
	done chan struct{}
	err  error
}

// CacheStats count what the cache saved.
type CacheStats struct {
	Hits, Misses int64
	Fetched      int64 // bytes fetched from the repository
}

// DefaultCacheBytes bounds a cache when no size is given.
const DefaultCacheBytes = 4 << 30

// fillTimeout bounds one fetch from the repository.
const fillTimeout = 5 * time.Minute

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// NewCache opens (or creates) a cache in dir holding at most max bytes
// (DefaultCacheBytes when 0).
func NewCache(dir string, max int64) (*Cache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, err
	}
	if max == 0 {
		max = DefaultCacheBytes
	}
	return &Cache{dir: dir, max: max, fills: map[string]*fill{}}, nil
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Fetched: c.fetched.Load()}
}

func (c *Cache) path(sum string) string { return filepath.Join(c.dir, sum) }

// Open returns the blob sum (size bytes), fetching it with fetch when the
// cache does not hold it yet; callers asking for one blob at the same time
// share one fetch.
func (c *Cache) Open(sum string, size int64, fetch func(context.Context) (io.ReadCloser, error)) (*os.File, error) {
	if !sha256Hex.MatchString(sum) {
		return nil, fmt.Errorf("cache: %q is not a sha256", sum)
	}
	for filled := false; ; filled = true {
		if f, err := os.Open(c.path(sum)); err == nil {
			if !filled {
				c.hits.Add(1)
			}
			return f, nil
		}
		c.mu.Lock()
		if fl, ok := c.fills[sum]; ok {
			c.mu.Unlock()
			<-fl.done
			if fl.err != nil {
				return nil, fl.err
			}
			c.hits.Add(1) // another caller's fill served this one
			continue
		}
		// A fill may have ended between the open above and the lock: its
		// file is in place before its entry goes, so look again.
		if f, err := os.Open(c.path(sum)); err == nil {
			c.mu.Unlock()
			c.hits.Add(1)
			return f, nil
		}
		fl := &fill{done: make(chan struct{})}
		c.fills[sum] = fl
		c.mu.Unlock()
		c.misses.Add(1)
		fl.err = c.fill(sum, size, fetch)
		c.mu.Lock()
		delete(c.fills, sum)
		c.mu.Unlock()
		close(fl.done)
		if fl.err != nil {
			return nil, fl.err
		}
	}
}

func (c *Cache) fill(sum string, size int64, fetch func(context.Context) (io.ReadCloser, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	body, err := fetch(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "fill-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, size+1))
	c.fetched.Add(n)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum || n != size {
		return fmt.Errorf("sha256 mismatch: the repository announced %s (%d bytes) and sent %s (%d bytes); not kept", sum, size, got, n)
	}
	if err := os.Rename(tmp.Name(), c.path(sum)); err != nil {
		return err
	}
	c.evict()
	return nil
}

// evict removes the least recently filled blobs while the cache holds more
// than its bound.
func (c *Cache) evict() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type blob struct {
		name string
		size int64
		mod  time.Time
	}
	var blobs []blob
	total := int64(0)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !sha256Hex.MatchString(e.Name()) {
			continue
		}
		blobs = append(blobs, blob{e.Name(), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].mod.Before(blobs[j].mod) })
	for _, b := range blobs {
		if total <= c.max {
			return
		}
		if err := os.Remove(c.path(b.name)); err == nil || errors.Is(err, os.ErrNotExist) {
			total -= b.size
		}
	}
}
