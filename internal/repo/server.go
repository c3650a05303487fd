package repo

import (
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Defaults of Options.
const (
	DefaultMaxBlob = 256 << 20
	maxJSONBody    = 64 << 10
)

// ReportFunc delivers a VM's report to the workflow that asked for it (a
// Temporal signal in drift). It returns ErrWorkflowGone when that workflow
// has ended.
type ReportFunc func(ctx context.Context, in Instruction, r Report) error

// ErrWorkflowGone: the instruction's workflow ended; its report has nowhere
// to go and the instruction is closed.
var ErrWorkflowGone = errors.New("the install workflow has ended")

// RegisterFunc records a VM in its tenant's inventory (a Temporal update in
// drift). It returns errors wrapping ErrInvalid or ErrConflict for what the
// VM must fix, ErrUnavailable when the inventory did not answer in time.
type RegisterFunc func(ctx context.Context, r Registration) error

// Errors of registration.
var (
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("unavailable")
	// ErrBadSignature: an upload's publisher signature does not verify.
	ErrBadSignature = errors.New("signature does not verify")
)

// Options configure a repository server.
type Options struct {
	Dir        string // store directory
	AdminToken string // bearer token for upload, delete and instructions
	Secret     []byte // shared with the management gateway: verifies tenant signatures
	MaxBlob    int64  // largest upload in bytes (DefaultMaxBlob when 0)
	// SigningKey signs every index entry; without it entries are unsigned
	// and agents refuse them.
	SigningKey ed25519.PrivateKey
	Report     ReportFunc
	Register   RegisterFunc
	Logger     *slog.Logger
}

// Server is the repository's HTTP API:
//
//	GET    /v1/packages                                  list (what the caller may see)
//	PUT    /v1/packages/{name}/{version}/{os}/{arch}     upload (admin; ?sha256=&public=true|tenants=a,b&hook=&health=
//	                                                     &pubkey=&signature= for the publisher's Ed25519 signature)
//	GET    /v1/packages/{name}/{version}/{os}/{arch}     metadata
//	GET    /v1/packages/{name}/{version}/{os}/{arch}/blob  download, with X-Drift-Sha256
//	DELETE /v1/packages/{name}/{version}/{os}/{arch}     delete (admin)
//	PUT    /v1/instructions                              post an instruction (admin)
//	DELETE /v1/instructions?id=                          withdraw it (admin)
//	GET    /v1/instructions                              the calling VM's instructions (tenant)
//	POST   /v1/reports                                   the calling VM's report (tenant)
//	POST   /v1/register                                  the calling VM's name, labels and packages (tenant)
type Server struct {
	store *Store
	opts  Options
	mux   *http.ServeMux
}

// New opens the store and builds the API.
func New(opts Options) (*Server, error) {
	if opts.AdminToken == "" {
		return nil, errors.New("repository: an admin token is required")
	}
	if len(opts.Secret) == 0 {
		return nil, errors.New("repository: the gateway secret is required")
	}
	if opts.MaxBlob == 0 {
		opts.MaxBlob = DefaultMaxBlob
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	st, err := OpenStore(opts.Dir, opts.MaxBlob)
	if err != nil {
		return nil, err
	}
	if key := opts.SigningKey; key != nil {
		// Entries indexed before this key existed are signed now.
		n, err := st.Reseal(func(p *Package) bool {
			if p.SignedBy(key.Public().(ed25519.PublicKey)) {
				return false
			}
			p.Signatures = append(p.Signatures, SignPackage(key, ByRepository, *p))
			return true
		})
		if err != nil {
			st.Close()
			return nil, err
		}
		if n > 0 {
			opts.Logger.Info("signed index entries with the repository key", "entries", n, "key", KeyID(key.Public().(ed25519.PublicKey)))
		}
	} else {
		opts.Logger.Warn("repository has no signing key: agents refuse its packages")
	}
	s := &Server{store: st, opts: opts, mux: http.NewServeMux()}
	const pkg = "/v1/packages/{name}/{version}/{os}/{arch}"
	s.mux.HandleFunc("GET /v1/packages", s.anyone(s.list))
	s.mux.HandleFunc("PUT "+pkg, s.admin(s.upload))
	s.mux.HandleFunc("GET "+pkg, s.anyone(s.metadata))
	s.mux.HandleFunc("GET "+pkg+"/blob", s.anyone(s.download))
	s.mux.HandleFunc("DELETE "+pkg, s.admin(s.remove))
	s.mux.HandleFunc("PUT /v1/instructions", s.admin(s.postInstruction))
	s.mux.HandleFunc("DELETE /v1/instructions", s.admin(s.withdrawInstruction))
	s.mux.HandleFunc("GET /v1/instructions", s.tenantOnly(s.instructions))
	s.mux.HandleFunc("POST /v1/reports", s.tenantOnly(s.report))
	s.mux.HandleFunc("POST /v1/register", s.tenantOnly(s.register))
	return s, nil
}

// Close closes the store.
func (s *Server) Close() error { return s.store.Close() }

// Store is the server's store (tests read it).
func (s *Server) Store() *Store { return s.store }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// caller is who a request comes from: the admin or a signed tenant.
type caller struct {
	admin          bool
	tenant, client string
}

// identify authenticates a request. A request that claims a tenant must
// carry a valid signature, whatever else it carries.
func (s *Server) identify(r *http.Request) (caller, int, error) {
	if tenant := r.Header.Get(HeaderTenant); tenant != "" || r.Header.Get(HeaderSignature) != "" {
		client := r.Header.Get(HeaderClient)
		if !verify(s.opts.Secret, tenant, client, r.Header.Get(HeaderSignature)) {
			return caller{}, http.StatusUnauthorized, errors.New("tenant identity signature is missing or wrong")
		}
		if err := ValidTenant(tenant); err != nil {
			return caller{}, http.StatusBadRequest, err
		}
		return caller{tenant: tenant, client: client}, 0, nil
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.AdminToken)) == 1 {
		return caller{admin: true}, 0, nil
	}
	return caller{}, http.StatusUnauthorized, errors.New("admin token or signed tenant identity required")
}

type handler func(w http.ResponseWriter, r *http.Request, c caller)

func (s *Server) admin(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, status, err := s.identify(r)
		if err == nil && !c.admin {
			status, err = http.StatusForbidden, errors.New("admin only")
		}
		if err != nil {
			s.fail(w, r, status, err)
			return
		}
		h(w, r)
	}
}

func (s *Server) tenantOnly(h handler) http.HandlerFunc {
	return s.anyone(func(w http.ResponseWriter, r *http.Request, c caller) {
		if c.admin {
			s.fail(w, r, http.StatusForbidden, errors.New("tenant VMs only (through the gateways)"))
			return
		}
		h(w, r, c)
	})
}

func (s *Server) anyone(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, status, err := s.identify(r)
		if err != nil {
			s.fail(w, r, status, err)
			return
		}
		h(w, r, c)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	s.opts.Logger.Info("repository refused", "method", r.Method, "path", r.URL.Path, "status", status, "tenant", r.Header.Get(HeaderTenant), "err", err)
	http.Error(w, err.Error(), status)
}

// failStore maps store errors to statuses.
func (s *Server) failStore(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrExists):
		status = http.StatusConflict
	case errors.Is(err, ErrTooLarge), errors.As(err, &maxErr):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrDigest), errors.Is(err, ErrBadSignature):
		status = http.StatusUnprocessableEntity
	}
	s.fail(w, r, status, err)
}

func refOf(r *http.Request) (Ref, error) {
	ref := Ref{Name: r.PathValue("name"), Version: r.PathValue("version"), Platform: r.PathValue("os") + "/" + r.PathValue("arch")}
	return ref, ref.Validate()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, c caller) {
	all, err := s.store.List()
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	visible := []Package{}
	for _, p := range all {
		if c.admin || p.VisibleTo(c.tenant) {
			visible = append(visible, p)
		}
	}
	writeJSON(w, http.StatusOK, visible)
}

// visible finds a package the caller may see; another tenant's private
// package is "not found", so its existence is not disclosed.
func (s *Server) visible(r *http.Request, c caller) (Package, error) {
	ref, err := refOf(r)
	if err != nil {
		return Package{}, err
	}
	p, err := s.store.Get(ref)
	if err == nil && !c.admin && !p.VisibleTo(c.tenant) {
		return Package{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return p, err
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request, c caller) {
	p, err := s.visible(r, c)
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request, c caller) {
	p, err := s.visible(r, c)
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	_, f, err := s.store.Open(p.Ref)
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set(HeaderSHA256, p.SHA256)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(p.Size, 10))
	io.Copy(w, f)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	ref, err := refOf(r)
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	if r.ContentLength > s.opts.MaxBlob {
		s.failStore(w, r, fmt.Errorf("blob of %d bytes over %d: %w", r.ContentLength, s.opts.MaxBlob, ErrTooLarge))
		return
	}
	q := r.URL.Query()
	p := Package{Ref: ref, SHA256: q.Get("sha256"), Hook: q.Get("hook"), Health: q.Get("health"), Public: q.Get("public") == "true"}
	if t := q.Get("tenants"); t != "" {
		p.Tenants = strings.Split(t, ",")
	}
	if !p.Public && len(p.Tenants) == 0 {
		s.fail(w, r, http.StatusBadRequest, errors.New("say who may see the package: public=true or tenants=a,b"))
		return
	}
	publisher, err := publisherSignature(q.Get("pubkey"), q.Get("signature"))
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	p, err = s.store.Put(p, http.MaxBytesReader(w, r.Body, s.opts.MaxBlob), func(p *Package) error {
		if publisher != nil {
			if err := publisher(p); err != nil {
				return err
			}
		}
		if s.opts.SigningKey != nil {
			p.Signatures = append(p.Signatures, SignPackage(s.opts.SigningKey, ByRepository, *p))
		}
		return nil
	})
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	s.opts.Logger.Info("package uploaded", "package", p.Ref.String(), "sha256", p.SHA256, "size", p.Size)
	writeJSON(w, http.StatusCreated, p)
}

// publisherSignature checks an upload's publisher signature (base64 key and
// signature) over the entry the upload makes, and adds it; nil when the
// upload carries none.
func publisherSignature(pubkey, signature string) (func(*Package) error, error) {
	if pubkey == "" && signature == "" {
		return nil, nil
	}
	pub, err1 := base64.StdEncoding.DecodeString(pubkey)
	sig, err2 := base64.StdEncoding.DecodeString(signature)
	if err1 != nil || err2 != nil || len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w publisher signature: pubkey and signature are base64 Ed25519", ErrInvalid)
	}
	return func(p *Package) error {
		if !ed25519.Verify(pub, Statement(*p), sig) {
			return fmt.Errorf("publisher key %s: %w over %s (sha256 %s, %d bytes, hook %q, health %q)", KeyID(pub), ErrBadSignature, p.Ref, p.SHA256, p.Size, p.Hook, p.Health)
		}
		p.Signatures = append(p.Signatures, Signature{KeyID: KeyID(pub), By: ByPublisher, Sig: signature})
		return nil
	}, nil
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	ref, err := refOf(r)
	if err == nil {
		err = s.store.Delete(ref)
	}
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postInstruction records an instruction for a package the tenant may see;
// the package's digest and hook are pinned into it.
func (s *Server) postInstruction(w http.ResponseWriter, r *http.Request) {
	var in Instruction
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&in); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if err := ValidTenant(in.Tenant); err != nil {
		s.failStore(w, r, err)
		return
	}
	if in.ID == "" || in.WorkflowID == "" || in.Client == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("instruction needs id, workflowId and client"))
		return
	}
	if err := CheckAction(in.Action, in.Strategy); err != nil {
		s.failStore(w, r, err)
		return
	}
	if in.Action == ActionUninstall {
		// Nothing is downloaded: the package need not exist any more.
		if err := in.Package.Ref.ValidateAnyVersion(); err != nil {
			s.failStore(w, r, err)
			return
		}
		in.Package = Package{Ref: in.Package.Ref}
	} else {
		p, err := s.store.Get(in.Package.Ref)
		if err == nil && !p.VisibleTo(in.Tenant) {
			err = fmt.Errorf("%s is not visible to tenant %s: %w", in.Package.Ref, in.Tenant, ErrNotFound)
		}
		if err != nil {
			s.failStore(w, r, err)
			return
		}
		in.Package = p
	}
	if err := s.store.PutInstruction(in); err != nil {
		s.failStore(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *Server) withdrawInstruction(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteInstruction(r.URL.Query().Get("id")); err != nil {
		s.failStore(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) instructions(w http.ResponseWriter, r *http.Request, c caller) {
	ins, err := s.store.Instructions(c.tenant, c.client)
	if err != nil {
		s.failStore(w, r, err)
		return
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
	if ins == nil {
		ins = []Instruction{}
	}
	writeJSON(w, http.StatusOK, ins)
}

// report accepts a VM's report for one of its own instructions, hands it to
// the workflow and closes the instruction.
func (s *Server) report(w http.ResponseWriter, r *http.Request, c caller) {
	var rep Report
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&rep); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	in, err := s.store.Instruction(rep.InstructionID)
	if err != nil || in.Tenant != c.tenant || in.Client != c.client {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no open instruction %q for this VM", rep.InstructionID))
		return
	}
	rep.Tenant, rep.Client = c.tenant, c.client
	if s.opts.Report == nil {
		s.fail(w, r, http.StatusServiceUnavailable, errors.New("reports are not delivered by this repository"))
		return
	}
	err = s.opts.Report(r.Context(), in, rep)
	if errors.Is(err, ErrWorkflowGone) {
		s.store.DeleteInstruction(in.ID)
		s.fail(w, r, http.StatusGone, err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, fmt.Errorf("deliver report: %w", err))
		return
	}
	if err := s.store.DeleteInstruction(in.ID); err != nil {
		s.failStore(w, r, err)
		return
	}
	s.opts.Logger.Info("install report", "instruction", in.ID, "ok", rep.OK, "error", rep.Error)
	w.WriteHeader(http.StatusAccepted)
}

// register hands a VM's registration, with the identity the gateways
// signed, to the tenant's inventory.
func (s *Server) register(w http.ResponseWriter, r *http.Request, c caller) {
	var reg Registration
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&reg); err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	reg.Tenant, reg.Client = c.tenant, c.client
	if s.opts.Register == nil {
		s.fail(w, r, http.StatusServiceUnavailable, errors.New("registrations are not delivered by this repository"))
		return
	}
	err := s.opts.Register(r.Context(), reg)
	switch {
	case err == nil:
		s.opts.Logger.Info("VM registered", "tenant", reg.Tenant, "client", reg.Client, "name", reg.Name)
		writeJSON(w, http.StatusOK, reg)
	case errors.Is(err, ErrInvalid):
		s.fail(w, r, http.StatusBadRequest, err)
	case errors.Is(err, ErrConflict):
		s.fail(w, r, http.StatusConflict, err)
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, http.StatusServiceUnavailable, err)
	default:
		s.fail(w, r, http.StatusBadGateway, fmt.Errorf("register: %w", err))
	}
}
