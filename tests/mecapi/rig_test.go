// Package mecapi tests drift's mobility API as another service would use
// it: the drift api binary as its own process (restarted mid-run where that
// matters), a real Temporal server, the embedded registry and the example
// app's image, an in-process worker running every cloud's instances as
// local processes, and callbacks on loopback servers. The tests speak only
// the documented HTTP API, with their own types; Temporal is used directly
// only for what another service would do through it (a Move signal) and to
// prove where state lives.
package mecapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// rig is the real parts and one API process.
type rig struct {
	t        *testing.T
	c        client.Client // Temporal: for Signal moves and to look at where state lives
	address  string        // Temporal's frontend
	topo     *topology.Topology
	ws       *workerhost.Workers
	image    string
	registry string // host:port
	drift    string // the drift binary
	tokens   string // the API's tokens file
	apiPort  int
	api      *harness.Proc
	base     string // http://127.0.0.1:port/amsi/v1
	tokenA   string // client svc-a, read and write
	tokenB   string // client svc-b, read and write
	tokenRO  string // client reader, read only
}

func newRig(t *testing.T) *rig {
	t.Helper()
	drift, _ := harness.Binaries(t)
	stack, c := harness.Temporal(t, "")
	reg := harness.Registry(t)
	r := &rig{t: t, c: c, address: stack.Address(), drift: drift, topo: harness.ExampleTopology(t),
		image: harness.HelloImage(t, reg, "v1"), registry: reg.Host(), tokens: filepath.Join(t.TempDir(), "tokens"), apiPort: harness.FreePort(t)}
	r.ws = harness.Workers(t, c, r.topo, reg.Host(), nil)
	r.tokenA = r.newToken("svc-a", "read,write")
	r.tokenB = r.newToken("svc-b", "read,write")
	r.tokenRO = r.newToken("reader", "read")
	r.startAPI()
	return r
}

// newToken makes a token with `drift api token add`, as an operator would.
func (r *rig) newToken(clientID, scopes string) string {
	out, err := exec.Command(r.drift, "api", "token", "add", "--tokens", r.tokens, "--client", clientID, "--scopes", scopes).Output()
	if err != nil {
		r.t.Fatalf("drift api token add: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// startAPI starts a drift api process on the rig's port.
func (r *rig) startAPI() {
	r.t.Helper()
	r.api = r.apiProcess(r.apiPort)
	r.base = fmt.Sprintf("http://127.0.0.1:%d/amsi/v1", r.apiPort)
}

func (r *rig) apiProcess(port int) *harness.Proc {
	r.t.Helper()
	p := harness.Start(r.t, r.drift, "api", "--address", r.address, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--tokens", r.tokens, "--callback-allow", "loopback", "--log-level", "warn")
	p.WaitFor(r.t, "drift api serving", 2*time.Minute)
	return p
}

// replica starts another drift api process beside the rig's and returns a
// client of it with token.
func (r *rig) replica(token string) *outsider {
	r.t.Helper()
	port := harness.FreePort(r.t)
	r.apiProcess(port)
	return &outsider{t: r.t, r: r, token: token, base: fmt.Sprintf("http://127.0.0.1:%d/amsi/v1", port)}
}

// killAPI kills the API process (SIGKILL: no goodbye).
func (r *rig) killAPI() {
	r.t.Helper()
	_ = syscall.Kill(-r.api.Cmd.Process.Pid, syscall.SIGKILL)
	if exited, _ := r.api.Wait(30 * time.Second); !exited {
		r.t.Fatal("the API process did not die")
	}
}

// as is an outsider client of the API with a token.
func (r *rig) as(token string) *outsider {
	return &outsider{t: r.t, r: r, token: token}
}

type outsider struct {
	t     *testing.T
	r     *rig
	token string
	base  string // of another API process than the rig's, when set
}

// do sends a request (body: nil, a string of JSON, or a value to encode)
// and returns the status, headers and body. No answer may be a 5xx.
func (o *outsider) do(method, path string, body any) (int, http.Header, []byte) {
	o.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			o.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	base := o.r.base
	if o.base != "" {
		base = o.base
	}
	req, err := http.NewRequest(method, base+strings.TrimPrefix(path, "/amsi/v1"), rd)
	if err != nil {
		o.t.Fatal(err)
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		o.t.Errorf("%s %s answered %d: %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, resp.Header, b
}

// json expects status and decodes the answer into out.
func (o *outsider) json(method, path string, body any, status int, out any) http.Header {
	o.t.Helper()
	code, hdr, b := o.do(method, path, body)
	if code != status {
		o.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			o.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return hdr
}

// problemDoc is an RFC 7807 answer.
type problemDoc struct {
	Type, Title, Detail, Instance string
	Status                        int
	InvalidParams                 []struct{ Param, Reason string }
}

func (p problemDoc) names(param string) bool {
	for _, ip := range p.InvalidParams {
		if ip.Param == param {
			return true
		}
	}
	return false
}

// problem expects a problem document with status.
func (o *outsider) problem(method, path string, body any, status int) (problemDoc, http.Header) {
	o.t.Helper()
	code, hdr, b := o.do(method, path, body)
	var p problemDoc
	if code != status || hdr.Get("Content-Type") != "application/problem+json" || json.Unmarshal(b, &p) != nil || p.Status != status || p.Detail == "" {
		o.t.Fatalf("%s %s: %d %s, want a %d problem document: %s", method, path, code, hdr.Get("Content-Type"), status, b)
	}
	return p, hdr
}

// The resources as a client written from the spec sees them.

type associateID struct {
	Type  int    `json:"type"`
	Value string `json:"value"`
}

type registration struct {
	AppMobilityServiceID string `json:"appMobilityServiceId,omitempty"`
	ServiceConsumerID    struct {
		AppInstanceID string `json:"appInstanceId,omitempty"`
	} `json:"serviceConsumerId"`
	DeviceInformation []struct {
		AssociateID             associateID `json:"associateId"`
		AppMobilityServiceLevel int         `json:"appMobilityServiceLevel,omitempty"`
		ContextTransferState    *int        `json:"contextTransferState,omitempty"`
	} `json:"deviceInformation,omitempty"`
	ExpiryTime int `json:"expiryTime,omitempty"`
	Drift      struct {
		User          string `json:"user"`
		Session       string `json:"session"`
		Phase         string `json:"phase"`
		Serving       string `json:"serving"`
		CurrentRegion string `json:"currentRegion"`
		Endpoint      *struct {
			URL string `json:"url"`
		} `json:"endpoint"`
		State *sessionState       `json:"state"`
		Links map[string]linkType `json:"_links"`
	} `json:"drift"`
}

type linkType struct {
	Href string `json:"href"`
}

type sessionState struct {
	Phase     string
	InFlight  []string
	Instances []struct{ Cloud, Role, Status string }
	Moves     []struct{ ID, Status, Source string }
	Totals    struct{ Handovers int }
}

type move struct {
	MoveID         string `json:"moveId"`
	Source         string `json:"source"`
	Region         string `json:"region"`
	MobilityStatus int    `json:"mobilityStatus"`
	Status         string `json:"status"`
	FromCloud      string `json:"fromCloud"`
	ToCloud        string `json:"toCloud"`
	Warm           *bool  `json:"warm"`
	Error          string `json:"error"`
	Endpoint       *struct {
		URL string `json:"url"`
	} `json:"endpoint"`
	Links map[string]linkType `json:"_links"`
}

// registrationBody is a RegistrationInfo as the spec shapes it, with
// drift's extension.
func registrationBody(user, image, region string) map[string]any {
	return map[string]any{
		"serviceConsumerId": map[string]any{"appInstanceId": "hello"},
		"deviceInformation": []any{map[string]any{
			"associateId":             map[string]any{"type": 1, "value": user},
			"appMobilityServiceLevel": 3,
			"contextTransferState":    0,
		}},
		"drift": map[string]any{"app": map[string]any{"image": image, "port": 8080, "health": "/healthz"}, "region": region},
	}
}

func regPath(user string) string {
	return "/amsi/v1/app_mobility_services/" + url.PathEscape("hello."+user)
}

// register registers user at region and expects status.
func (o *outsider) register(user, region string, status int) registration {
	o.t.Helper()
	var reg registration
	o.json("POST", "/amsi/v1/app_mobility_services", registrationBody(user, o.r.image, region), status, &reg)
	return reg
}

// settle waits until user's session serves with nothing in flight and
// every instance ready, so the next move to a neighbour is warm.
func (o *outsider) settle(user string) {
	o.t.Helper()
	waitFor(o.t, 3*time.Minute, "the session of "+user+" to settle", func() bool {
		var reg registration
		o.json("GET", regPath(user), nil, http.StatusOK, &reg)
		st := reg.Drift.State
		if st == nil || st.Phase != "serving" || len(st.InFlight) > 0 {
			return false
		}
		for _, in := range st.Instances {
			if in.Status != "ready" {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

// receiver is a loopback callback: it keeps every notification it got,
// or (dead) answers none.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []received
	release chan struct{}
}

type received struct {
	at     time.Time
	header string // X-Drift-Notification-Id
	raw    []byte
	n      notification
}

// notification is what a client reads of any notification.
type notification struct {
	NotificationType string        `json:"notificationType"`
	MobilityStatus   int           `json:"mobilityStatus"`
	AssociateID      []associateID `json:"associateId"`
	TimeStamp        *struct {
		Seconds     int64 `json:"seconds"`
		NanoSeconds int64 `json:"nanoSeconds"`
	} `json:"timeStamp"`
	TargetAppInfo *struct {
		AppInstanceID string `json:"appInstanceId"`
		CommInterface *struct {
			IPAddresses []struct {
				Host string `json:"host"`
				Port int    `json:"port"`
			} `json:"ipAddresses"`
		} `json:"commInterface"`
	} `json:"targetAppInfo"`
	AdjacentAppInfo []struct {
		AppInstanceID string `json:"appInstanceId"`
	} `json:"adjacentAppInfo"`
	Links struct {
		Subscription linkType `json:"subscription"`
	} `json:"_links"`
	Drift struct {
		NotificationID       string `json:"notificationId"`
		AppMobilityServiceID string `json:"appMobilityServiceId"`
		MoveID               string `json:"moveId"`
		Status               string `json:"status"`
		User                 string `json:"user"`
	} `json:"drift"`
}

func (n received) stamp() time.Time {
	if n.n.TimeStamp == nil {
		return time.Time{}
	}
	return time.Unix(n.n.TimeStamp.Seconds, n.n.TimeStamp.NanoSeconds)
}

func newReceiver(t *testing.T, dead bool) *receiver {
	rc := &receiver{release: make(chan struct{})}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dead {
			select { // answer nothing until the caller gives up
			case <-r.Context().Done():
			case <-rc.release:
			}
			return
		}
		b, _ := io.ReadAll(r.Body)
		var n notification
		if err := json.Unmarshal(b, &n); err != nil || n.NotificationType == "" {
			t.Errorf("a notification that is not one: %s", b)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{at: time.Now(), header: r.Header.Get("X-Drift-Notification-Id"), raw: b, n: n})
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() {
		close(rc.release)
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path }

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// await waits until ok holds of what arrived.
func (rc *receiver) await(t *testing.T, within time.Duration, what string, ok func([]received) bool) []received {
	t.Helper()
	var got []received
	waitFor(t, within, what, func() bool {
		got = rc.all()
		return ok(got)
	})
	return got
}

// moveNotes finds the mobility notifications of a move, by status.
func moveNotes(got []received, moveID string) map[string][]received {
	out := map[string][]received{}
	for _, n := range got {
		if n.n.NotificationType == "MobilityProcedureNotification" && n.n.Drift.MoveID == moveID {
			out[n.n.Drift.Status] = append(out[n.n.Drift.Status], n)
		}
	}
	return out
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var adjacency = topology.Policy{Kind: topology.Adjacency}
