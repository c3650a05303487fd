package mecapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edgedrift/drift/internal/amsi"
)

// openAPIDoc is this API's OpenAPI 3 document, made by OpenAPI from the
// routes and the Go types of their bodies (go test ./internal/mecapi -run
// TestOpenAPI -update writes it; the test fails while it is stale).
//
//go:embed openapi.json
var openAPIDoc []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(openAPIDoc)
}

// schemaNames name Go types whose own names would not say what they are.
var schemaNames = map[reflect.Type]string{
	reflect.TypeFor[amsi.Subscription]():      "Subscription",
	reflect.TypeFor[amsi.Registration]():      "RegistrationExtension",
	reflect.TypeFor[amsi.Delivery]():          "SubscriptionExtension",
	reflect.TypeFor[amsi.Notice]():            "NotificationExtension",
	reflect.TypeFor[amsi.FieldError]():        "InvalidParam",
	reflect.TypeFor[Problem]():                "ProblemDetails",
	reflect.TypeFor[amsi.AssociateID]():       "AssociateId",
	reflect.TypeFor[amsi.ServiceConsumerID](): "ServiceConsumerId",
}

// notifications are what callbacks receive.
var notifications = []any{
	amsi.MobilityProcedureNotificationBody{}, amsi.AdjacentAppInfoNotificationBody{},
	amsi.ExpiryNotificationBody{}, amsi.TestNotificationBody{},
}

// OpenAPI is the API's OpenAPI 3 document.
func OpenAPI() ([]byte, error) {
	g := &schemaGen{schemas: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, rt := range (&API{}).routes() {
		op := map[string]any{
			"summary":       rt.Summary,
			"operationId":   operationID(rt),
			"x-drift-scope": rt.Scope,
			"responses":     g.responses(rt),
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			params = append(params, map[string]any{"in": "path", "name": m[1], "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.Query {
			params = append(params, map[string]any{"in": "query", "name": q, "required": false, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(rt.Request))}}}
		}
		if rt.Path == subscriptionsPath && rt.Method == "POST" {
			op["callbacks"] = g.callbacks()
		}
		if paths[rt.Path] == nil {
			paths[rt.Path] = map[string]any{}
		}
		paths[rt.Path][strings.ToLower(rt.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "drift Application Mobility Service API",
			"version": "2.2.1-drift.1",
			"description": "ETSI GS MEC 021 v2.2.1 application mobility over drift's mobility sessions. " +
				"drift's own fields are in \"drift\" objects; its move resources are drift's. Every request needs a bearer token " +
				"(scope read for GET, write otherwise). Notifications are delivered at least once; drift.notificationId de-duplicates.",
		},
		"servers":    []any{map[string]any{"url": BasePath}},
		"security":   []any{map[string]any{"bearer": []any{}}},
		"paths":      trimBase(paths),
		"components": map[string]any{"schemas": g.schemas, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

var pathParam = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// trimBase makes paths relative to the server URL (BasePath).
func trimBase(paths map[string]map[string]any) map[string]any {
	out := map[string]any{}
	for p, ops := range paths {
		out[strings.TrimPrefix(p, BasePath)] = ops
	}
	return out
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.Split(strings.TrimPrefix(rt.Path, BasePath), "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '_' || r == '.' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

func (g *schemaGen) responses(rt route) map[string]any {
	out := map[string]any{}
	for _, st := range append(rt.Statuses, http.StatusUnauthorized, http.StatusForbidden) {
		resp := map[string]any{"description": http.StatusText(st)}
		switch {
		case st == http.StatusNoContent:
		case st < 300 && rt.Response != nil:
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": g.of(reflect.TypeOf(rt.Response))}}
		case st < 300 && rt.Path == openAPIPath:
			resp["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		case st >= 400:
			resp["content"] = map[string]any{"application/problem+json": map[string]any{"schema": g.of(reflect.TypeFor[Problem]())}}
		}
		out[strconv.Itoa(st)] = resp
	}
	return out
}

func (g *schemaGen) callbacks() map[string]any {
	var oneOf []any
	for _, n := range notifications {
		oneOf = append(oneOf, g.of(reflect.TypeOf(n)))
	}
	return map[string]any{"notification": map[string]any{
		"{$request.body#/callbackReference}": map[string]any{"post": map[string]any{
			"summary":     "a notification, at least once; the X-Drift-Notification-Id header and drift.notificationId are the same on every attempt",
			"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"oneOf": oneOf}}}},
			"responses":   map[string]any{"204": map[string]any{"description": "received (any 2xx); 408, 429 and 5xx are retried, other answers suspend the subscription"}},
		}},
	}}
}

// schemaGen makes JSON schemas of Go types, one component per named
// struct.
type schemaGen struct {
	schemas map[string]any
}

func (g *schemaGen) of(t reflect.Type) map[string]any {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case t == reflect.TypeFor[json.RawMessage]():
		return map[string]any{"type": "object", "description": "free-form JSON"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem())
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint32:
		return map[string]any{"type": "integer", "format": "uint32", "minimum": 0}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Struct:
		name := schemaNames[t]
		if name == "" {
			name = strings.TrimSuffix(t.Name(), "Body")
		}
		if _, done := g.schemas[name]; !done {
			g.schemas[name] = nil // breaks cycles
			g.schemas[name] = g.object(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	panic(fmt.Sprintf("mecapi: no schema for %s", t))
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.of(f.Type)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			required = append(required, name)
		}
	}
	out := map[string]any{"type": "object", "properties": props}
	if required != nil {
		out["required"] = required
	}
	return out
}
