package mecapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/workflows"
)

// Problem is an RFC 7807 problem details body (application/problem+json).
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"` // the request path, or the move that failed
	// InvalidParams names each bad field of the request (dotted JSON path,
	// or a path or query parameter's name) with why it is bad.
	InvalidParams []InvalidParam `json:"invalidParams,omitempty"`
}

// InvalidParam is one bad field of a request.
type InvalidParam = amsi.FieldError

// Problem types: URNs, so nothing suggests a page to fetch.
const (
	typeInvalidParameter = "urn:drift:amsi:invalid-parameter"
	typeUnauthorized     = "urn:drift:amsi:unauthorized"
	typeForbidden        = "urn:drift:amsi:forbidden"
	typeUnknownRegion    = "urn:drift:amsi:unknown-region"
	typeNotFound         = "urn:drift:amsi:not-found"
	typeMethodNotAllowed = "urn:drift:amsi:method-not-allowed"
	typeConflict         = "urn:drift:amsi:conflict"
	typeMoveFailed       = "urn:drift:amsi:move-failed"
	typeSessionFailed    = "urn:drift:amsi:session-failed"
	typeTooLarge         = "urn:drift:amsi:request-too-large"
	typeLimit            = "urn:drift:amsi:limit-reached"
	typeTimeout          = "urn:drift:amsi:timeout"
	typeUnavailable      = "urn:drift:amsi:temporal-unavailable"
)

func problem(status int, typ, detail string) Problem {
	return Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

// invalid is a 400 naming the bad fields; an unknown region alone gets its
// own type so clients can tell it apart.
func invalid(params []InvalidParam) Problem {
	var reasons []string
	unknownRegion := false
	for _, p := range params {
		reasons = append(reasons, p.Param+": "+p.Reason)
		unknownRegion = unknownRegion || strings.HasPrefix(p.Reason, "unknown region")
	}
	p := problem(http.StatusBadRequest, typeInvalidParameter, strings.Join(reasons, "; "))
	if unknownRegion && len(params) == 1 {
		p.Type = typeUnknownRegion
	}
	p.InvalidParams = params
	return p
}

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	writeJSONType(w, p.Status, "application/problem+json", p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONType(w, status, "application/json", v)
}

func writeJSONType(w http.ResponseWriter, status int, ctype string, v any) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away
}

// maxBody bounds a request body: a compose file fits many times over.
const maxBody = 1 << 20

// decode reads the JSON body into v strictly: unknown fields, wrong types,
// trailing data and oversized bodies are problems naming what is wrong.
func decode(w http.ResponseWriter, r *http.Request, v any) *Problem {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return nil
	}
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		tooBig  *http.MaxBytesError
		p       Problem
	)
	switch {
	case errors.As(err, &tooBig):
		p = problem(http.StatusRequestEntityTooLarge, typeTooLarge, fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		p = invalid([]InvalidParam{{Param: "body", Reason: "empty: want a JSON object"}})
	case errors.As(err, &syntax):
		p = invalid([]InvalidParam{{Param: "body", Reason: fmt.Sprintf("not valid JSON at byte %d: %v", syntax.Offset, err)}})
	case errors.As(err, &typeErr) && typeErr.Field != "":
		p = invalid([]InvalidParam{{Param: typeErr.Field, Reason: fmt.Sprintf("want a JSON %s, got %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}})
	case errors.As(err, &typeErr):
		p = invalid([]InvalidParam{{Param: "body", Reason: fmt.Sprintf("want a JSON object, got %s", typeErr.Value)}})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p = invalid([]InvalidParam{{Param: field, Reason: "unknown field"}})
	default:
		p = invalid([]InvalidParam{{Param: "body", Reason: err.Error()}})
	}
	return &p
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice":
		return "array"
	}
	return goKind
}

// fromError maps an error of a Temporal call to a problem; what names the
// thing asked about in the detail ("session session/alice/hello").
func fromError(err error, what string) Problem {
	var (
		notFound *serviceerror.NotFound
		started  *serviceerror.WorkflowExecutionAlreadyStarted
		badArg   *serviceerror.InvalidArgument
		unavail  *serviceerror.Unavailable
		timeout  *client.WorkflowUpdateServiceTimeoutOrCanceledError
		appErr   *temporal.ApplicationError
	)
	switch {
	case errors.As(err, &notFound):
		return problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("%s: not found or no longer open (%s)", what, notFound.Message))
	case errors.As(err, &started):
		return problem(http.StatusConflict, typeConflict, fmt.Sprintf("%s: already open", what))
	case errors.As(err, &appErr):
		msg := appErr.Message()
		switch appErr.Type() {
		case activities.ErrTypeInvalidImage, activities.ErrTypeUnknownImage:
			p := problem(http.StatusBadRequest, typeInvalidParameter, fmt.Sprintf("%s: %s", what, msg))
			p.InvalidParams = []InvalidParam{{Param: "drift.app.image", Reason: msg}}
			return p
		case workflows.ErrTypeInvalidSession, activities.ErrTypeInvalidSpec, workflows.ErrTypeInvalidSubscription:
			return problem(http.StatusBadRequest, typeInvalidParameter, fmt.Sprintf("%s: %s", what, msg))
		case workflows.ErrTypeUnknownRegion:
			p := problem(http.StatusBadRequest, typeUnknownRegion, fmt.Sprintf("%s: %s", what, msg))
			p.InvalidParams = []InvalidParam{{Param: "region", Reason: msg}}
			return p
		case workflows.ErrTypeRegistrationConflict:
			return problem(http.StatusConflict, typeConflict, msg+"; DELETE it first to register it differently")
		case workflows.ErrTypeMoveRefused:
			return problem(http.StatusConflict, typeConflict, fmt.Sprintf("%s takes no move now: %s", what, msg))
		case workflows.ErrTypeNoSuchSubscription:
			return problem(http.StatusNotFound, typeNotFound, msg)
		case workflows.ErrTypeTooManySubscriptions:
			return problem(http.StatusConflict, typeLimit, msg)
		case workflows.ErrTypeMoveFailed:
			return problem(http.StatusBadGateway, typeMoveFailed, fmt.Sprintf("%s: %s", what, msg))
		}
		if strings.Contains(msg, "session is exiting") {
			return problem(http.StatusConflict, typeConflict, fmt.Sprintf("%s is exiting", what))
		}
		return problem(http.StatusBadGateway, typeSessionFailed, fmt.Sprintf("%s: %v", what, err))
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeout):
		return problem(http.StatusGatewayTimeout, typeTimeout, fmt.Sprintf("%s: no answer in time (%v); the operation may go on in Temporal", what, err))
	case errors.As(err, &unavail), errors.Is(err, context.Canceled):
		return problem(http.StatusServiceUnavailable, typeUnavailable, fmt.Sprintf("%s: %v", what, err))
	case errors.As(err, &badArg):
		return problem(http.StatusBadRequest, typeInvalidParameter, fmt.Sprintf("%s: %s", what, badArg.Message))
	}
	return problem(http.StatusBadGateway, typeSessionFailed, fmt.Sprintf("%s: %v", what, err))
}
