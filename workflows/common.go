package workflows

import (
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/names"
)

// setProgressQuery answers the Progress query (and the names a workflow
// answered before that convention) with fn.
func setProgressQuery[T any](ctx workflow.Context, fn func() (T, error), legacy ...string) error {
	for _, name := range append([]string{names.ProgressQuery}, legacy...) {
		if err := workflow.SetQueryHandler(ctx, name, fn); err != nil {
			return err
		}
	}
	return nil
}

func isType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// errText is what an activity said when it failed (its application
// error's whole message, with the container's last log lines, say), or
// the innermost error's text.
func errText(err error) string {
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &appErr):
		return appErr.Message()
	}
	return RootMessage(err)
}

// RootMessage is the innermost error's text, without Temporal's wrapping.
func RootMessage(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// sortedKeys is how workflow code ranges over a map: in key order, so replay
// sees the same order. The map range inside does not leak its order.
//
//workflowcheck:ignore
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// invalid is the error of bad input: typed, never retried.
func invalid(typ, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), typ, nil)
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
