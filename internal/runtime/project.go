package runtime

import (
	"fmt"
	"slices"
	"strings"
)

// ObjectName names the object of one part of an instance (a service's
// container or Deployment, a volume), so every runtime finds again what it
// made from (instance, part) alone. The one-service form's service has no
// name and its objects are named after the instance, as before projects.
// Other names always end in a hash of both parts, so (a, b-c) and (a-b, c)
// never meet.
func ObjectName(instance, part string) string {
	if part == "" {
		return instance
	}
	return hashed(sanitize(strings.ToLower(instance+"-"+part), "-"), instance+"\x00"+part)
}

// hashed is clean (a valid name prefix) cut to fit and suffixed with a hash
// of key.
func hashed(clean, key string) string {
	sum := shortHash(key)
	if len(clean) > 63-len(sum)-1 {
		clean = clean[:63-len(sum)-1]
	}
	return strings.TrimRight(clean, "-") + "-" + sum
}

// StartOrder returns the services in the order they start: every service
// after the ones it depends on, otherwise in the order given. It fails
// (wrapping ErrInvalid) on a dependency that names no service and on a
// cycle, naming the services on it.
func StartOrder(services []Service) ([]Service, error) {
	index := make(map[string]int, len(services))
	for i, s := range services {
		index[s.Name] = i
	}
	for _, s := range services {
		for _, d := range s.DependsOn {
			if _, ok := index[d]; !ok {
				return nil, fmt.Errorf("%w: service %q depends on %q, which is not a service of the project", ErrInvalid, s.Name, d)
			}
		}
	}
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]int, len(services))
	order := make([]Service, 0, len(services))
	var path []string
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			from := slices.Index(path, services[i].Name)
			cycle := append(slices.Clone(path[from:]), services[i].Name)
			return fmt.Errorf("%w: depends_on has a cycle: %s", ErrInvalid, strings.Join(cycle, " → "))
		}
		state[i] = visiting
		path = append(path, services[i].Name)
		for _, d := range services[i].DependsOn {
			if err := visit(index[d]); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		order = append(order, services[i])
		return nil
	}
	for i := range services {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return order, nil
}
