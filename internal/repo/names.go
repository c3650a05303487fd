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
func (r Ref) Validate() error {
	if len(r.Name) > maxNameLen || !namePattern.MatchString(r.Name) {
		return fmt.Errorf("%w package name %q: lower-case letters, digits, and . _ + - between them", ErrInvalid, r.Name)
	}
	if len(r.Version) > maxNameLen || !versionPattern.MatchString(r.Version) {
		return fmt.Errorf("%w version %q", ErrInvalid, r.Version)
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

// validHook checks the declared install hook: a relative path inside the
// package, never leaving it.
func validHook(h string) error {
	if h == "" {
		return nil
	}
	if len(h) > 256 || !hookPattern.MatchString(h) || path.Clean(h) != h || strings.HasPrefix(h, ".") || strings.Contains(h, "/.") {
		return fmt.Errorf("%w hook %q: a relative path inside the package", ErrInvalid, h)
	}
	return nil
}

// Package is one uploaded blob and who may see it.
type Package struct {
	Ref
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Hook     string    `json:"hook,omitempty"` // run after unpacking, relative to the install dir
	Public   bool      `json:"public"`
	Tenants  []string  `json:"tenants,omitempty"` // who may see it when not public
	Uploaded time.Time `json:"uploaded"`
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

// Instruction tells one VM (tenant network + address) to install a package.
type Instruction struct {
	ID         string  `json:"id"` // <workflow id>#<attempt>
	WorkflowID string  `json:"workflowId"`
	Tenant     string  `json:"tenant"`
	Client     string  `json:"client"` // the VM's address in the tenant network
	Package    Package `json:"package"`
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
	Tenant        string `json:"tenant,omitempty"`
	Client        string `json:"client,omitempty"`
}
