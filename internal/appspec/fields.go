package appspec

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/edgedrift/drift/internal/runtime"
)

// The compose fields drift reads; every other field a file sets is refused
// by name, so nothing a user wrote is silently dropped. The README's
// "Compose fields" table says what each one becomes. Extension fields
// (x-…) are allowed everywhere, as the compose specification says.
var (
	// topFields are the top-level fields drift reads.
	topFields = fields("name", "services", "volumes", "networks", "version")
	// serviceFields are the service fields drift honours or maps.
	serviceFields = fields("image", "build", "command", "entrypoint", "environment", "ports", "expose",
		"healthcheck", "depends_on", "deploy", "scale", "volumes", "networks", "hostname", "labels",
		"restart", "profiles", "extends")
	// deployFields are the fields of a service's deploy: drift reads.
	deployFields = fields("replicas")
)

// refusedWhy explains the refusals users meet most.
var refusedWhy = map[string]string{
	"container_name": "drift names every container after its instance, so that instances never collide",
	"network_mode":   "every service of an instance joins the instance's own network",
	"privileged":     "drift runs no privileged service",
	"secrets":        "drift has no secret store: pass values in environment:",
	"configs":        "drift reads only the compose file: put the values in environment:",
	"env_file":       "drift reads only the compose file: move the variables under environment:",
	"label_file":     "drift reads only the compose file: move the labels under labels:",
	"include":        "drift reads one self-contained compose file",
	"external":       "drift makes every volume and network of an instance itself, and removes them with it",
	"driver":         "drift makes every volume and network of an instance itself, with the runtime's default driver",
	"name":           "drift names every volume and network after its instance",
}

func fields(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// rawCompose is what drift reads from the file as written, before
// compose-go's loader normalises it: the project name, the order of the
// services and the fields the file sets.
type rawCompose struct {
	name     string
	order    []string // service names in file order
	top      []string
	services []rawEntry
	volumes  []rawEntry
	networks []rawEntry
}

// rawEntry is one named entry (a service, volume or network) and its value.
type rawEntry struct {
	name  string
	value *yaml.Node
}

// readRaw reads data (which compose-go has already accepted) as YAML.
func readRaw(data []byte) (rawCompose, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return rawCompose{}, fmt.Errorf("%w: compose file: %v", runtime.ErrInvalid, err)
	}
	var r rawCompose
	for _, kv := range entries(&doc) {
		r.top = append(r.top, kv.name)
		switch kv.name {
		case "name":
			r.name = kv.value.Value
		case "services":
			r.services = entries(kv.value)
			for _, s := range r.services {
				r.order = append(r.order, s.name)
			}
		case "volumes":
			r.volumes = entries(kv.value)
		case "networks":
			r.networks = entries(kv.value)
		}
	}
	return r, nil
}

// entries lists the keys of a mapping node in order, following aliases and
// merge keys (<<), so a field set through an anchor counts as set.
func entries(n *yaml.Node) []rawEntry {
	for n != nil && (n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return nil
		}
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var out []rawEntry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if k == "<<" {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				out = append(out, entries(m)...)
			}
			continue
		}
		out = append(out, rawEntry{k, v})
	}
	return out
}

// unsupported names every field the file sets that drift refuses, with why.
func (r rawCompose) unsupported() []string {
	var out []string
	refuse := func(field, last string) {
		msg := "field " + field + " is not supported"
		if why, ok := refusedWhy[last]; ok {
			msg += ": " + why
		}
		out = append(out, msg)
	}
	for _, k := range r.top {
		if !topFields[k] && !extension(k) {
			refuse(k, k)
		}
	}
	for _, s := range r.services {
		for _, f := range entries(s.value) {
			path := "services." + s.name + "." + f.name
			switch {
			case extension(f.name):
			case !serviceFields[f.name]:
				refuse(path, f.name)
			case f.name == "deploy":
				for _, d := range entries(f.value) {
					if !deployFields[d.name] && !extension(d.name) {
						refuse(path+"."+d.name, d.name)
					}
				}
			case f.name == "networks":
				// The list form, or a map whose entries set nothing.
				for _, n := range entries(f.value) {
					for _, o := range entries(n.value) {
						if !extension(o.name) {
							refuse(path+"."+n.name+"."+o.name, o.name)
						}
					}
				}
			}
		}
	}
	for _, kind := range []struct {
		what    string
		entries []rawEntry
	}{{"volumes", r.volumes}, {"networks", r.networks}} {
		for _, e := range kind.entries {
			for _, o := range entries(e.value) {
				if !extension(o.name) {
					refuse(kind.what+"."+e.name+"."+o.name, o.name)
				}
			}
		}
	}
	return out
}

func extension(field string) bool { return strings.HasPrefix(field, "x-") }
