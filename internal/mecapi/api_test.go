package mecapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/deploy/examples"
	"github.com/edgedrift/drift/internal/topology"
)

var update = flag.Bool("update", false, "rewrite openapi.json")

// noTemporal is a Temporal client whose every call panics: a request
// answered without one made no call at all.
type noTemporal struct{ client.Client }

const (
	readToken  = "token-read"
	writeToken = "token-write"
)

func newTestAPI(t *testing.T) *httptest.Server {
	t.Helper()
	topo, err := topology.Parse(examples.Topology)
	if err != nil {
		t.Fatal(err)
	}
	tokens := StaticTokens(map[string]Caller{
		readToken:  {Client: "reader", Scopes: []string{ScopeRead}},
		writeToken: {Client: "writer", Scopes: []string{ScopeRead, ScopeWrite}},
	})
	srv := httptest.NewServer(New(noTemporal{}, Options{Topology: topo, Tokens: tokens}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, token, method, path, body string) (int, http.Header, Problem) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p Problem
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(b, &p) != nil || p.Status != resp.StatusCode || p.Detail == "" {
			t.Fatalf("%s %s: %d %s is not a problem document: %s", method, path, resp.StatusCode, ct, b)
		}
	}
	return resp.StatusCode, resp.Header, p
}

// The checked-in OpenAPI document is what the routes and Go types make,
// and documents every route the API serves.
func TestOpenAPIDocumentMatchesTheHandlers(t *testing.T) {
	doc, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(filepath.Join(".", "openapi.json"), doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(doc, openAPIDoc) {
		t.Fatal("openapi.json is stale: go test ./internal/mecapi -run TestOpenAPI -update")
	}
	var parsed struct {
		Paths map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal(openAPIDoc, &parsed); err != nil {
		t.Fatal(err)
	}
	srv := newTestAPI(t)
	n := 0
	for path, ops := range parsed.Paths {
		for method := range ops {
			n++
			// Every documented operation is served: with no token it is
			// 401, never 404 or 405.
			concrete := strings.NewReplacer("{appMobilityServiceId}", "hello.alice", "{moveId}", "m1", "{subscriptionId}", "s1").Replace(path)
			if code, _, _ := call(t, srv, "", strings.ToUpper(method), BasePath+concrete, ""); code != http.StatusUnauthorized {
				t.Errorf("%s %s: %d without a token, want 401", method, path, code)
			}
		}
	}
	if routes := len((&API{}).routes()); n != routes {
		t.Errorf("the document has %d operations, the API %d routes", n, routes)
	}
	for _, want := range []string{`"MobilityProcedureNotification"`, `"AdjacentAppInfoNotification"`, `"ExpiryNotification"`, `"TestNotification"`,
		`"appMobilityServiceId"`, `"serviceConsumerId"`, `"deviceInformation"`, `"expiryTime"`, `"filterCriteria"`, `"expiryDeadline"`,
		`"requestTestNotification"`, `"targetAppInfo"`, `"mobilityStatus"`, `"adjacentAppInfo"`, `"appInstanceCommLink"`, `"/app_mobility_services/{appMobilityServiceId}/deregister_task"`} {
		if !bytes.Contains(openAPIDoc, []byte(want)) {
			t.Errorf("the document lacks %s", want)
		}
	}
}

func TestAuthentication(t *testing.T) {
	srv := newTestAPI(t)
	for _, c := range []struct {
		token, method, path string
		want                int
	}{
		{"", "GET", "/amsi/v1/app_mobility_services", 401},
		{"nonsense", "GET", "/amsi/v1/subscriptions", 401},
		{readToken, "POST", "/amsi/v1/subscriptions", 403},
		{readToken, "DELETE", "/amsi/v1/app_mobility_services/hello.alice", 403},
		{readToken, "GET", "/amsi/v1/openapi.json", 200},
		{readToken, "PATCH", "/amsi/v1/subscriptions", 405},
		{readToken, "GET", "/amsi/v1/nothing", 404},
	} {
		code, hdr, p := call(t, srv, c.token, c.method, c.path, "")
		if code != c.want {
			t.Errorf("%s %s with %q: %d (%s), want %d", c.method, c.path, c.token, code, p.Detail, c.want)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") || code == 403 && !strings.Contains(hdr.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s %s: WWW-Authenticate %q", c.method, c.path, hdr.Get("WWW-Authenticate"))
		}
	}
}

// Bad input is refused with a 400 naming the field, before any call to
// Temporal (noTemporal would panic).
func TestBadInputNamesTheField(t *testing.T) {
	srv := newTestAPI(t)
	reg := func(user, extra string) string {
		return `{"serviceConsumerId":{"appInstanceId":"hello"},"deviceInformation":[{"associateId":{"type":1,"value":` + user + `}}],` +
			`"drift":{"app":{"image":"127.0.0.1:5000/hello:v1"},"region":"bastille"` + extra + `}}`
	}
	for name, c := range map[string]struct {
		method, path, body, param string
	}{
		"dot user":            {"POST", "/amsi/v1/app_mobility_services", reg(`"."`, ""), "deviceInformation[0].associateId.value"},
		"slash user":          {"POST", "/amsi/v1/app_mobility_services", reg(`"a/b"`, ""), "deviceInformation[0].associateId.value"},
		"decomposed user":     {"POST", "/amsi/v1/app_mobility_services", reg(`"zoe\u0308"`, ""), "deviceInformation[0].associateId.value"},
		"bad neighbours":      {"POST", "/amsi/v1/app_mobility_services", reg(`"alice"`, `,"neighbours":"closest"`), "drift.neighbours"},
		"mep consumer":        {"POST", "/amsi/v1/app_mobility_services", `{"serviceConsumerId":{"mepId":"m1"}}`, "serviceConsumerId.mepId"},
		"unknown field":       {"POST", "/amsi/v1/app_mobility_services", `{"serviceConsumerId":{"appInstanceId":"hello"},"colour":1}`, "colour"},
		"dot-dot id":          {"GET", "/amsi/v1/app_mobility_services/hello..", "", "appMobilityServiceId"},
		"id without app":      {"GET", "/amsi/v1/app_mobility_services/alice", "", "appMobilityServiceId"},
		"encoded slash":       {"GET", "/amsi/v1/app_mobility_services/hello.a%2Fb/moves", "", "appMobilityServiceId"},
		"credentials":         {"POST", "/amsi/v1/subscriptions", `{"subscriptionType":"MobilityProcedureSubscription","callbackReference":"http://u:p@127.0.0.1:9/cb","filterCriteria":{}}`, "callbackReference"},
		"port 99999":          {"POST", "/amsi/v1/subscriptions", `{"subscriptionType":"MobilityProcedureSubscription","callbackReference":"http://127.0.0.1:99999/cb","filterCriteria":{}}`, "callbackReference"},
		"not allowed host":    {"POST", "/amsi/v1/subscriptions", `{"subscriptionType":"MobilityProcedureSubscription","callbackReference":"http://10.0.0.1/cb","filterCriteria":{}}`, "callbackReference"},
		"websocket":           {"POST", "/amsi/v1/subscriptions", `{"subscriptionType":"AdjacentAppInfoSubscription","websockNotifConfig":{},"callbackReference":"http://127.0.0.1:9/cb","filterCriteria":{}}`, "websockNotifConfig"},
		"move without region": {"POST", "/amsi/v1/app_mobility_services/hello.alice/moves", `{}`, "region"},
		"filter param":        {"GET", "/amsi/v1/app_mobility_services?filter=(eq,appInstanceId,hello)", "", "filter"},
		"adjacent without id": {"GET", "/amsi/v1/queries/adjacent_app_instances", "", "appMobilityServiceId"},
	} {
		code, _, p := call(t, srv, writeToken, c.method, c.path, c.body)
		found := false
		for _, ip := range p.InvalidParams {
			found = found || ip.Param == c.param
		}
		if code != http.StatusBadRequest || !found {
			t.Errorf("%s: %d %+v, want 400 naming %s", name, code, p, c.param)
		}
	}
}

func TestCallbackPolicy(t *testing.T) {
	p, err := ParseCallbackAllow([]string{"loopback", "10.1.0.0/16", "hooks.example.com:8443", "*.svc.example"})
	if err != nil {
		t.Fatal(err)
	}
	for url, ok := range map[string]bool{
		"http://127.0.0.1:9/cb":            true,
		"http://localhost/cb":              true,
		"http://[::1]:80/":                 true,
		"http://10.1.2.3/":                 true,
		"http://10.2.0.1/":                 false,
		"https://hooks.example.com:8443/x": true,
		"https://hooks.example.com/x":      false, // port 443, not 8443
		"https://a.svc.example/x":          true,
		"https://svc.example.evil.com/":    false,
		"ftp://127.0.0.1/":                 false,
		"http://127.0.0.1:0/":              false,
		"http://127.0.0.1:65536/":          false,
		"http://user@127.0.0.1/":           false,
		"http://127.0.0.1/#frag":           false,
		"http://[::ffff:127.0.0.1]:9/":     true,
		"http://127.0.0.1.nip.io/":         false,
	} {
		if err := p.Check(url); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want allowed=%v", url, err, ok)
		}
	}
	var def CallbackPolicy
	if def.Check("http://192.168.1.1/") == nil || def.Check("http://127.0.0.1:8/") != nil {
		t.Error("the zero policy is not loopback only")
	}
	for _, bad := range []string{"*.", "10.0.0.0/33", "host:0", "a b"} {
		if _, err := ParseCallbackAllow([]string{bad}); err == nil {
			t.Errorf("--callback-allow %q accepted", bad)
		}
	}
}

func TestTokensFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	tok, err := AddToken(file, "svc-a", []string{ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if bytes.Contains(b, []byte(tok)) || !bytes.Contains(b, []byte("svc-a read sha256:")) {
		t.Fatalf("the tokens file holds %q", b)
	}
	if info, _ := os.Stat(file); info.Mode().Perm() != 0o600 {
		t.Errorf("tokens file mode %v", info.Mode().Perm())
	}
	tokens, err := LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := tokens.Lookup(tok); !ok || c.Client != "svc-a" || c.Can(ScopeWrite) || !c.Can(ScopeRead) {
		t.Errorf("lookup %+v %v", c, ok)
	}
	if _, ok := tokens.Lookup(tok + "x"); ok {
		t.Error("a wrong token was accepted")
	}
	if err := os.WriteFile(file, []byte("svc read sha256:zz\n"), 0o600); err == nil {
		if _, err := LoadTokens(file); err == nil || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("a bad line: %v", err)
		}
	}
}

// A compose project drift cannot run is refused with a 400 whose reason
// names what is wrong, before any call to Temporal.
func TestBadComposeNamesTheField(t *testing.T) {
	srv := newTestAPI(t)
	const web = "name: shop\nservices:\n  web:\n    image: 127.0.0.1:5000/web:v1\n    ports: [\"8080:8080\"]\n"
	const db = "  db:\n    image: 127.0.0.1:5000/db:v1\n    expose: [\"5432\"]\n"
	for name, c := range map[string]struct{ compose, says string }{
		"unsupported field":          {web + "    privileged: true\n" + db, "field services.web.privileged is not supported"},
		"cyclic depends_on":          {web + "    depends_on: [db]\n" + db + "    depends_on: [web]\n", "cycle"},
		"one published port twice":   {web + "  db:\n    image: 127.0.0.1:5000/db:v1\n    ports: [\"8080:5432\"]\n", "both publish port 8080/tcp"},
		"images the pipeline builds": {"name: shop\nservices:\n  web:\n    build: ./web\n    ports: [\"8080:8080\"]\n" + db, "release it through a pipeline"},
	} {
		compose, _ := json.Marshal(c.compose)
		body := `{"serviceConsumerId":{"appInstanceId":"shop"},"deviceInformation":[{"associateId":{"type":1,"value":"alice"}}],` +
			`"drift":{"app":{"compose":` + string(compose) + `},"region":"bastille"}}`
		code, _, p := call(t, srv, writeToken, "POST", "/amsi/v1/app_mobility_services", body)
		found := false
		for _, ip := range p.InvalidParams {
			found = found || ip.Param == "drift.app.compose" && strings.Contains(ip.Reason, c.says)
		}
		if code != http.StatusBadRequest || !found {
			t.Errorf("%s: %d %+v, want 400 naming drift.app.compose with %q", name, code, p, c.says)
		}
	}
}
