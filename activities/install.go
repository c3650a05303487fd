package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/fleet"
	"github.com/edgedrift/drift/internal/gateway"
	"github.com/edgedrift/drift/internal/repo"
)

// Error types of installs no retry can fix.
const (
	ErrTypeInvalidInstall = "InvalidInstall"
	ErrTypeUnknownPackage = "UnknownPackage"
)

// Install acts on a network node: it keeps the node's gateway pairs and
// talks to the software repository as its admin. A worker registers one
// Install on the node's queue (drift.node.<id>).
type Install struct {
	Node *gateway.Node
	Repo *repo.Client
}

// EnsureGateway starts the tenant network's gateway pair unless it runs.
func (a *Install) EnsureGateway(_ context.Context, cfg gateway.PairConfig) (gateway.Pair, error) {
	p, err := a.Node.Ensure(cfg)
	if errors.Is(err, repo.ErrInvalid) {
		return p, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInstall, err)
	}
	return p, err
}

// PostInstruction records an install instruction for a VM; a package the
// tenant may not see (or that does not exist) is final.
func (a *Install) PostInstruction(ctx context.Context, in repo.Instruction) (repo.Instruction, error) {
	out, err := a.Repo.PostInstruction(ctx, in)
	var se *repo.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound:
			return out, temporal.NewNonRetryableApplicationError(se.Message, ErrTypeUnknownPackage, err)
		case http.StatusBadRequest:
			return out, temporal.NewNonRetryableApplicationError(se.Message, ErrTypeInvalidInstall, err)
		}
	}
	return out, err
}

// Resolve names a version of a package for a rollout: exact, a range or
// "latest", among the versions the tenant may see on the platform.
type Resolve struct {
	Tenant   string `json:"tenant"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Platform string `json:"platform"`
}

// ResolvePackage picks the highest version the constraint allows, once per
// rollout; none is final (UnknownPackage), naming the versions there are.
func (a *Install) ResolvePackage(ctx context.Context, r Resolve) (repo.Package, error) {
	want, err := fleet.ParseConstraint(r.Version)
	if err != nil {
		return repo.Package{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInstall, err)
	}
	all, err := a.Repo.List(ctx)
	if err != nil {
		return repo.Package{}, err
	}
	byVersion := map[string]repo.Package{}
	var versions []string
	for _, p := range all {
		if p.Name == r.Name && p.Platform == r.Platform && p.VisibleTo(r.Tenant) {
			byVersion[p.Version] = p
			versions = append(versions, p.Version)
		}
	}
	v, ok := want.Choose(versions)
	if !ok {
		msg := fmt.Sprintf("no version of %s matching %s for %s that tenant %s may see (there are: %s)", r.Name, r.Version, r.Platform, r.Tenant, strings.Join(versions, ", "))
		return repo.Package{}, temporal.NewNonRetryableApplicationError(msg, ErrTypeUnknownPackage, nil)
	}
	return byVersion[v], nil
}

// WithdrawInstruction removes an instruction no VM reported on.
func (a *Install) WithdrawInstruction(ctx context.Context, id string) error {
	return a.Repo.WithdrawInstruction(ctx, id)
}
