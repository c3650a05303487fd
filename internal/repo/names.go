// Package repo is drift's software repository on the management network:
// packages (name, version, platform) whose blobs are checked against their
// sha256 on upload and served with it, an index in bbolt, an admin token for
// upload and delete, per-tenant visibility, and the install instructions and
// reports tenant VMs exchange with the InstallSoftware workflow. Tenants are
// known only through the management gateway's HMAC-signed identity headers.
package repo

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// ErrInvalid marks malformed names, versions, platforms and hooks.
var ErrInvalid = errors.New("invalid")

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9_+-]*(\.[a-z0-9_+-]+)*$`)
	versionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+-]*(\.[A-Za-z0-9_+-]+)*$`)
	osArchPattern  = regexp.MustCompile(`^[a-z0-9]{1,16}$`)
	tenantPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	hookPattern    = regexp.MustCompile(`^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$`)
)

const maxNameLen = 64

// Ref names one package blob: name, version and platform ("linux/amd64").
type Ref struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Platform string `json:"platform"`
}

func (r Ref) String() string { return r.Name + "@" + r.Version + " (" + r.Platform + ")" }

// Validate rejects anything that is not a plain name: no path separators,
// no "..", no leading dots, bounded length.
func (r Ref) Validate() error { return r.validate(false) }

// ValidateAnyVersion is Validate that also accepts no version: every
// version of the package (what an uninstall removes).
func (r Ref) ValidateAnyVersion() error { return r.validate(true) }

func (r Ref) validate(anyVersion bool) error {
	if len(r.Name) > maxNameLen || !namePattern.MatchString(r.Name) {
		return fmt.Errorf("%w package name %q: lower-case letters, digits, and . _ + - between them", ErrInvalid, r.Name)
	}
	if (r.Version != "" || !anyVersion) && (len(r.Version) > maxNameLen || !versionPattern.MatchString(r.Version)) {
		return fmt.Errorf("%w version %q", ErrInvalid, r.Version)
	}
	if r.Version == "latest" {
		return fmt.Errorf("%w version %q: a word for the highest version, not a version", ErrInvalid, r.Version)
	}
	osName, arch, ok := strings.Cut(r.Platform, "/")
	if !ok || !osArchPattern.MatchString(osName) || !osArchPattern.MatchString(arch) {
		return fmt.Errorf("%w platform %q: want os/arch, e.g. linux/amd64", ErrInvalid, r.Platform)
	}
	return nil
}

// key is the index key of a ref.
func (r Ref) key() []byte { return []byte(r.Name + "\x00" + r.Version + "\x00" + r.Platform) }

// path is the ref's URL path under /v1/packages.
func (r Ref) path() string { return "/v1/packages/" + r.Name + "/" + r.Version + "/" + r.Platform }

// ValidTenant checks a tenant (network) id.
func ValidTenant(t string) error {
	if !tenantPattern.MatchString(t) {
		return fmt.Errorf("%w tenant %q: lower-case letters, digits and -", ErrInvalid, t)
	}
	return nil
}

// validScript checks a declared script (install hook, health check): a
// relative path inside the package, never leaving it.
func validScript(what, h string) error {
	if h == "" {
		return nil
	}
	if len(h) > 256 || !hookPattern.MatchString(h) || path.Clean(h) != h || strings.HasPrefix(h, ".") || strings.Contains(h, "/.") {
		return fmt.Errorf("%w %s %q: a relative path inside the package", ErrInvalid, what, h)
	}
	return nil
}

// Package is one uploaded blob and who may see it.
type Package struct {
	Ref
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Hook     string    `json:"hook,omitempty"`   // run after unpacking, relative to the install dir
	Health   string    `json:"health,omitempty"` // run after the hook; the version goes live only when it passes
	Public   bool      `json:"public"`
	Tenants  []string  `json:"tenants,omitempty"` // who may see it when not public
	Uploaded time.Time `json:"uploaded"`
	// Signatures of Statement(p): the repository's, and the publisher's
	// when the upload carried one.
	Signatures []Signature `json:"signatures,omitempty"`
}

// VisibleTo says whether tenant may list and download p.
func (p Package) VisibleTo(tenant string) bool {
	if p.Public {
		return true
	}
	for _, t := range p.Tenants {
		if t == tenant {
			return true
		}
	}
	return false
}

// Actions an instruction asks for, and how an update goes.
const (
	ActionInstall   = "install"   // add the version and make it current; others stay
	ActionUninstall = "uninstall" // remove the version (every version when none is named)
	ActionUpdate    = "update"    // make the version current, then remove the others
	// StrategyInPlace installs beside the current version and switches
	// only when hook and health check pass (A/B); the old one stays live
	// on failure.
	StrategyInPlace = "in-place"
	// StrategyReplace uninstalls first, then installs.
	StrategyReplace = "replace"
)

// CheckAction validates an action and strategy ("" is install, in place).
func CheckAction(action, strategy string) error {
	switch action {
	case "", ActionInstall, ActionUninstall, ActionUpdate:
	default:
		return fmt.Errorf("%w action %q: install, uninstall or update", ErrInvalid, action)
	}
	switch strategy {
	case "", StrategyInPlace, StrategyReplace:
	default:
		return fmt.Errorf("%w strategy %q: in-place or replace", ErrInvalid, strategy)
	}
	return nil
}

// Instruction tells one VM (tenant network + address) what to do with a
// package.
type Instruction struct {
	ID         string  `json:"id"` // <workflow id>#<attempt>
	WorkflowID string  `json:"workflowId"`
	Tenant     string  `json:"tenant"`
	Client     string  `json:"client"` // the VM's address in the tenant network
	Action     string  `json:"action,omitempty"`
	Strategy   string  `json:"strategy,omitempty"`
	Package    Package `json:"package"`
}

// Installed is one package as a VM's agent keeps it.
type Installed struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`            // the current one
	Versions []string `json:"versions,omitempty"` // every version on disk
}

// Registration is what a VM's agent tells the repository on first contact;
// Tenant and Client are set by the repository from the signed identity.
type Registration struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Installed []Installed       `json:"installed,omitempty"`
	Tenant    string            `json:"tenant,omitempty"`
	Client    string            `json:"client,omitempty"`
}

// Report is a VM agent's result for an instruction; Tenant and Client are
// set by the repository from the signed identity, never by the VM.
type Report struct {
	InstructionID string `json:"instructionId"`
	OK            bool   `json:"ok"`
	Transient     bool   `json:"transient,omitempty"` // a retry may succeed (download, network)
	Error         string `json:"error,omitempty"`
	SHA256        string `json:"sha256,omitempty"`
	Dir           string `json:"dir,omitempty"` // where it was installed
	Files         int    `json:"files,omitempty"`
	HookOutput    string `json:"hookOutput,omitempty"`
	Action        string `json:"action,omitempty"`
	Current       string `json:"current,omitempty"` // the package's current version afterwards ("" = none)
	Removed       int    `json:"removed,omitempty"` // files removed
	// Installed is everything the agent has afterwards (empty: nothing,
	// null: an agent that does not say); the inventory takes it as the
	// VM's truth.
	Installed []Installed `json:"installed"`
	Tenant    string      `json:"tenant,omitempty"`
	Client    string      `json:"client,omitempty"`
}
