package upgrade

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	version "github.com/hashicorp/go-version"
)

// DefaultErrorFormat is the start-up error a driver mismatch is expected to
// print unless the component says otherwise. Placeholders: {driver},
// {driver_version}, {component}, {constraint}, {version}.
const DefaultErrorFormat = "driver {driver} {driver_version} requires {component} {constraint}, running {version}"

// ErrBadFormat marks an error format that cannot be matched.
var ErrBadFormat = errors.New("bad driver error format")

// DriverError is what a component's start-up error says a driver needs.
type DriverError struct {
	Driver        string `json:"driver,omitempty"`
	DriverVersion string `json:"driverVersion,omitempty"`
	Component     string `json:"component,omitempty"`
	Constraint    string `json:"constraint"`
	Running       string `json:"running,omitempty"`
}

var placeholderRE = regexp.MustCompile(`\{([a-z_]+)\}`)

var placeholders = map[string]bool{"driver": true, "driver_version": true, "component": true, "constraint": true, "version": true}

// CompileErrorFormat turns a format into a regexp matching one line of
// output; it must name {constraint}.
func CompileErrorFormat(format string) (*regexp.Regexp, error) {
	if !strings.Contains(format, "{constraint}") {
		return nil, fmt.Errorf("%w: %q lacks {constraint}", ErrBadFormat, format)
	}
	var b strings.Builder
	b.WriteString("(?m)")
	last, seen := 0, map[string]bool{}
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(format, -1) {
		name := format[m[2]:m[3]]
		if !placeholders[name] || seen[name] {
			return nil, fmt.Errorf("%w: %q: unknown or repeated placeholder {%s}", ErrBadFormat, format, name)
		}
		seen[name] = true
		b.WriteString(regexp.QuoteMeta(format[last:m[0]]))
		b.WriteString(`(?P<` + name + `>[^\n]+?)`)
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(format[last:]))
	b.WriteString(`\s*$`)
	return regexp.Compile(b.String())
}

// ParseDriverError finds the first line of output matching format and
// returns what it says, with the constraint checked; found is false when no
// line matches.
func ParseDriverError(format, output string) (de DriverError, c version.Constraints, found bool, err error) {
	re, err := CompileErrorFormat(format)
	if err != nil {
		return de, nil, false, err
	}
	m := re.FindStringSubmatch(output)
	if m == nil {
		return de, nil, false, nil
	}
	get := func(name string) string {
		if i := re.SubexpIndex(name); i > 0 {
			return strings.TrimSpace(m[i])
		}
		return ""
	}
	de = DriverError{Driver: get("driver"), DriverVersion: get("driver_version"), Component: get("component"),
		Constraint: get("constraint"), Running: get("version")}
	c, err = version.NewConstraint(de.Constraint)
	if err != nil {
		return de, nil, true, fmt.Errorf("driver error names constraint %q: %w", de.Constraint, err)
	}
	return de, c, true, nil
}
