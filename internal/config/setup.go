package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/edgedrift/drift/internal/names"
)

// ErrNotSetUp marks a namespace drift cannot run in yet: missing, or
// without drift's search attributes. Its message says what to run.
var ErrNotSetUp = errors.New("namespace not set up for drift")

// SetupStep is one thing `drift setup` found or did.
type SetupStep struct {
	What   string `json:"what"`   // "namespace default", "search attribute DriftKind (Keyword)"
	Status string `json:"status"` // present, created, missing (could not be made here)
	Detail string `json:"detail,omitempty"`
}

// Setup statuses.
const (
	SetupPresent = "present"
	SetupCreated = "created"
	SetupMissing = "missing"
)

// setupWait bounds how long Setup waits for what it registered to show.
const setupWait = time.Minute

// Setup makes the namespace ready for drift on any cluster, idempotently:
// registers it when missing (retention for new ones), adds drift's search
// attributes, and waits until both are visible. What the caller may not
// change (e.g. on a hosted cluster) is reported as missing and the error
// says what is wrong.
func (t Temporal) Setup(ctx context.Context, c client.Client, retention time.Duration) ([]SetupStep, error) {
	ns := SetupStep{What: "namespace " + t.Namespace, Status: SetupPresent}
	_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.Namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		_, err = c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        t.Namespace,
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
			Description:                      "drift",
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			ns.Status, ns.Detail = SetupMissing, err.Error()
			return []SetupStep{ns}, fmt.Errorf("%w: namespace %s does not exist and cannot be registered here (%v): ask the cluster's operator to create it", ErrNotSetUp, t.Namespace, err)
		}
		ns.Status, ns.Detail = SetupCreated, "retention "+retention.String()
		if err := waitFor(ctx, func() error {
			_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.Namespace})
			return err
		}); err != nil {
			return []SetupStep{ns}, fmt.Errorf("namespace %s registered but not visible: %w", t.Namespace, err)
		}
	case err != nil:
		return nil, fmt.Errorf("describe namespace %s at %s: %w", t.Namespace, t.Address, err)
	}
	steps := []SetupStep{ns}
	missing, err := t.missingAttributes(ctx, c)
	if err != nil {
		return steps, err
	}
	for _, name := range sortedAttributes() {
		st := SetupStep{What: attributeText(name), Status: SetupPresent}
		if slices.Contains(missing, name) {
			st.Status = SetupCreated
		}
		steps = append(steps, st)
	}
	if len(missing) == 0 {
		return steps, nil
	}
	add := map[string]enums.IndexedValueType{}
	for _, name := range missing {
		add[name] = names.SearchAttributes[name]
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: t.Namespace, SearchAttributes: add})
	if err != nil {
		for i := range steps[1:] {
			if steps[i+1].Status == SetupCreated {
				steps[i+1].Status, steps[i+1].Detail = SetupMissing, err.Error()
			}
		}
		return steps, fmt.Errorf("%w: cannot add search attributes %s to namespace %s (%v): add them as Keyword with the cluster's own tools", ErrNotSetUp, strings.Join(missing, ", "), t.Namespace, err)
	}
	if err := waitFor(ctx, func() error {
		if m, err := t.missingAttributes(ctx, c); err != nil || len(m) > 0 {
			return errors.Join(err, fmt.Errorf("still missing %v", m))
		}
		return nil
	}); err != nil {
		return steps, fmt.Errorf("search attributes added but not visible: %w", err)
	}
	return steps, nil
}

// CheckSetup tells whether the namespace exists and has drift's search
// attributes; the error wraps ErrNotSetUp and names what to run. A caller
// not allowed to list attributes gets no error for them (the cluster's
// operator owns them).
func (t Temporal) CheckSetup(ctx context.Context, c client.Client) error {
	_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.Namespace})
	var notFound *serviceerror.NamespaceNotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%w: namespace %s does not exist on %s: run `%s`", ErrNotSetUp, t.Namespace, t.Address, t.SetupCommand())
	}
	if err != nil {
		return fmt.Errorf("Temporal at %s: %w", t.Address, err)
	}
	missing, err := t.missingAttributes(ctx, c)
	var denied *serviceerror.PermissionDenied
	if errors.As(err, &denied) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: namespace %s lacks drift's search attributes %s (every workflow task would fail with BadSearchAttributes): run `%s`",
			ErrNotSetUp, t.Namespace, strings.Join(missing, ", "), t.SetupCommand())
	}
	return nil
}

// SetupCommand is the drift setup command line for this connection.
func (t Temporal) SetupCommand() string {
	return fmt.Sprintf("drift setup --address %s --namespace %s", t.Address, t.Namespace)
}

// missingAttributes lists drift's search attributes the namespace lacks,
// sorted. A namespace registered moments ago may be unknown to the
// operator service until its namespace cache refreshes (about 10s): that
// answer is asked again for up to setupWait.
func (t Temporal) missingAttributes(ctx context.Context, c client.Client) ([]string, error) {
	var have *operatorservice.ListSearchAttributesResponse
	err := waitFor(ctx, func() error {
		var err error
		have, err = c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: t.Namespace})
		var notFound *serviceerror.NamespaceNotFound
		if err != nil && !errors.As(err, &notFound) {
			return finalError{err}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list search attributes of %s: %w", t.Namespace, err)
	}
	var missing []string
	for _, name := range sortedAttributes() {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

func sortedAttributes() []string {
	var out []string
	for name := range names.SearchAttributes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func attributeText(name string) string {
	typ := strings.TrimPrefix(names.SearchAttributes[name].String(), "INDEXED_VALUE_TYPE_")
	return fmt.Sprintf("search attribute %s (%s)", name, strings.ToUpper(typ[:1])+strings.ToLower(typ[1:]))
}

// finalError ends a waitFor at once with its error.
type finalError struct{ err error }

func (f finalError) Error() string { return f.err.Error() }

// waitFor retries check every 200ms until it passes, fails with a
// finalError, or setupWait is up.
func waitFor(ctx context.Context, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	for {
		err := check()
		var final finalError
		if errors.As(err, &final) {
			return final.err
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v (waited %s)", err, setupWait)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
