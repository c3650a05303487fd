// Package topology loads the cloud topology drift delivers to: center, fog
// and edge clouds, the region → first cloud table and the edges between
// clouds, and chooses a cloud's neighbours. It is pure logic, safe to call
// from workflow code.
package topology

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgedrift/drift/internal/runtime"
)

// Tier is a cloud's level in the hierarchy.
type Tier string

// Tiers, from the datacentre down to the clouds next to users.
const (
	Center Tier = "center"
	Fog    Tier = "fog"
	Edge   Tier = "edge"
)

// Location is a point on Earth in degrees.
type Location struct {
	Lat float64 `yaml:"lat" json:"lat"`
	Lon float64 `yaml:"lon" json:"lon"`
}

// Cloud is one place drift can run instances.
type Cloud struct {
	ID   string `yaml:"id" json:"id"`
	Tier Tier   `yaml:"tier" json:"tier"`
	// Parent is the cloud one tier up. A center cloud has none; a fog or
	// edge cloud without one is reached only through links.
	Parent   string    `yaml:"parent,omitempty" json:"parent,omitempty"`
	Location *Location `yaml:"location,omitempty" json:"location,omitempty"` // nil: unknown
	// Capacity is the most drift instances the cloud takes; 0 is unlimited.
	Capacity int `yaml:"capacity,omitempty" json:"capacity,omitempty"`
	// Uplink is the latency of the edge to Parent; 0 is unknown.
	Uplink  time.Duration  `yaml:"uplink,omitempty" json:"uplink,omitempty"`
	Runtime runtime.Config `yaml:"runtime,omitempty" json:"runtime,omitempty"`
	// Arch is the GOARCH the cloud's machines run (loong64, amd64, …).
	// A cloud with an arch takes only images that have linux/<arch> and
	// runs that platform of a multi-platform image; "" is unchecked.
	Arch string `yaml:"arch,omitempty" json:"arch,omitempty"`
}

// Link is an extra edge between two clouds besides parent ↔ child.
type Link struct {
	A       string        `yaml:"a" json:"a"`
	B       string        `yaml:"b" json:"b"`
	Latency time.Duration `yaml:"latency,omitempty" json:"latency,omitempty"` // 0: unknown
}

// Sentinel errors callers can test with errors.Is.
var (
	ErrUnknownRegion = errors.New("unknown region")
	ErrUnknownCloud  = errors.New("unknown cloud")
)

// document is the file format. It stays inside Topology so that a Topology
// can only come from a document that passed validation.
type document struct {
	Name    string            `yaml:"name" json:"name"`
	Clouds  []Cloud           `yaml:"clouds" json:"clouds"`
	Regions map[string]string `yaml:"regions" json:"regions"` // region → first cloud id
	Links   []Link            `yaml:"links,omitempty" json:"links,omitempty"`
}

// Topology is a validated topology. Build one with Parse, Load or
// json.Unmarshal; it is read-only afterwards.
type Topology struct {
	doc         document
	index       map[string]int // cloud id → position in doc.Clouds
	edges       [][]edge       // by cloud position, parent ↔ child and links
	regionNames []string       // sorted, so callers never range over the map
	hasLatency  bool           // some edge has a known latency
}

type edge struct {
	to      int
	latency time.Duration // 0: unknown
}

// Load reads and validates the topology file at path.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse decodes and validates a topology YAML document. Unknown fields are
// errors, so a misspelt key is never silently ignored. Invalid content is
// reported as a *ValidationError listing every problem. Besides the obvious
// (ids are unique DNS labels, references resolve, numbers are in range, no
// parent cycles, runtime configs validate): at least one center cloud
// exists and no center has a parent, since the center is the root that
// holds the image registry; an uplink needs a parent; and two clouds are
// joined by at most one edge, so their latency is never ambiguous.
func Parse(data []byte) (*Topology, error) {
	var doc document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF; let validation say what is missing.
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse topology: %w", err)
	}
	return build(doc)
}

// MarshalJSON encodes the topology as its document, so a Topology can
// travel in workflow inputs and histories.
func (t Topology) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.doc)
}

// UnmarshalJSON decodes a topology written by MarshalJSON and validates it.
func (t *Topology) UnmarshalJSON(data []byte) error {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	built, err := build(doc)
	if err != nil {
		return err
	}
	*t = *built
	return nil
}

func build(doc document) (*Topology, error) {
	if problems := doc.problems(); len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	t := &Topology{
		doc:   doc,
		index: make(map[string]int, len(doc.Clouds)),
		edges: make([][]edge, len(doc.Clouds)),
	}
	for i, c := range doc.Clouds {
		t.index[c.ID] = i
	}
	connect := func(a, b string, latency time.Duration) {
		ia, ib := t.index[a], t.index[b]
		t.edges[ia] = append(t.edges[ia], edge{ib, latency})
		t.edges[ib] = append(t.edges[ib], edge{ia, latency})
		t.hasLatency = t.hasLatency || latency > 0
	}
	for _, c := range doc.Clouds {
		if c.Parent != "" {
			connect(c.ID, c.Parent, c.Uplink)
		}
	}
	for _, l := range doc.Links {
		connect(l.A, l.B, l.Latency)
	}
	for r := range doc.Regions {
		t.regionNames = append(t.regionNames, r)
	}
	slices.Sort(t.regionNames)
	return t, nil
}

// Name is the topology's name from the file.
func (t *Topology) Name() string { return t.doc.Name }

// Clouds returns every cloud in file order.
func (t *Topology) Clouds() []Cloud { return slices.Clone(t.doc.Clouds) }

// Cloud returns the cloud with this id.
func (t *Topology) Cloud(id string) (Cloud, bool) {
	i, ok := t.index[id]
	if !ok {
		return Cloud{}, false
	}
	return t.doc.Clouds[i], true
}

// Center returns the first center cloud in file order; a valid topology
// always has one.
func (t *Topology) Center() Cloud {
	for _, c := range t.doc.Clouds {
		if c.Tier == Center {
			return c
		}
	}
	return Cloud{}
}

// Children returns the clouds whose parent is id, in file order (none for
// an unknown id).
func (t *Topology) Children(id string) []Cloud {
	if _, ok := t.index[id]; !ok {
		return nil
	}
	var out []Cloud
	for _, c := range t.doc.Clouds {
		if c.Parent == id {
			out = append(out, c)
		}
	}
	return out
}

// RegionNames returns the regions of the region table, sorted.
func (t *Topology) RegionNames() []string { return slices.Clone(t.regionNames) }

// FirstCloud returns the cloud that serves users in region first. An
// unknown region is an error wrapping ErrUnknownRegion that lists the known
// ones.
func (t *Topology) FirstCloud(region string) (Cloud, error) {
	id, ok := t.doc.Regions[region]
	if !ok {
		return Cloud{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownRegion, region, strings.Join(t.regionNames, ", "))
	}
	c, _ := t.Cloud(id)
	return c, nil
}
