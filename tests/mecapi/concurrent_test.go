package mecapi

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
)

// Eight registrations of one (user, app) at once, four asking the same
// thing and four at other regions, make exactly one session: one caller is
// told it was created (201), those that asked the same get it (200, same
// endpoint), the others a conflict (409) with its location, and nothing of
// the conflicting ones was ever deployed.
func TestConcurrentRegistrationsMakeOneSession(t *testing.T) {
	r := newRig(t)
	a := r.as(r.tokenA)
	const user = "concurrent"
	regions := []string{"quartier-latin", "quartier-latin", "quartier-latin", "quartier-latin", "bastille", "montmartre", "la-defense", "montparnasse"}
	type answer struct {
		region string
		code   int
		loc    string
		reg    registration
		p      problemDoc
	}
	answers := make([]answer, len(regions))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, region := range regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, hdr, raw := a.do("POST", "/amsi/v1/app_mobility_services", registrationBody(user, r.image, region))
			ans := answer{region: region, code: code, loc: hdr.Get("Location")}
			if code < 300 {
				_ = json.Unmarshal(raw, &ans.reg)
			} else {
				_ = json.Unmarshal(raw, &ans.p)
			}
			answers[i] = ans
		}()
	}
	close(start)
	wg.Wait()

	var created []answer
	for _, ans := range answers {
		if ans.code == http.StatusCreated {
			created = append(created, ans)
		}
	}
	if len(created) != 1 {
		t.Fatalf("%d registrations were told they created the session: %+v", len(created), answers)
	}
	winner := created[0]
	if winner.reg.Drift.Endpoint == nil {
		t.Fatalf("the created session has no endpoint: %+v", winner.reg)
	}
	for _, ans := range answers {
		switch {
		case ans.loc != regPath(user):
			t.Errorf("%s: Location %q", ans.region, ans.loc)
		case ans.code == http.StatusCreated:
		case ans.region == winner.region:
			if ans.code != http.StatusOK || ans.reg.Drift.Endpoint == nil || ans.reg.Drift.Endpoint.URL != winner.reg.Drift.Endpoint.URL ||
				ans.reg.AppMobilityServiceID != winner.reg.AppMobilityServiceID {
				t.Errorf("a registration asking the same thing got %d %+v", ans.code, ans.reg)
			}
		default:
			if ans.code != http.StatusConflict || ans.p.Type != "urn:drift:amsi:conflict" {
				t.Errorf("a conflicting registration (%s) got %d %+v", ans.region, ans.code, ans.p)
			}
		}
	}

	// One session, at the winner's region, in Temporal and in the list.
	resp, err := r.c.ListWorkflow(ctxFor(t, time.Minute), &workflowservice.ListWorkflowExecutionsRequest{Query: "DriftUser = '" + user + "'"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetExecutions()); n != 1 {
		t.Errorf("%d session workflows (runs) for one user and app", n)
	}
	var reg registration
	a.json("GET", regPath(user), nil, http.StatusOK, &reg)
	if reg.Drift.CurrentRegion != winner.region || reg.Drift.Endpoint.URL != winner.reg.Drift.Endpoint.URL {
		t.Errorf("the session serves %s at %v, the creator was told %s at %s", reg.Drift.CurrentRegion, reg.Drift.Endpoint, winner.region, winner.reg.Drift.Endpoint.URL)
	}
	// The session holds only its serving cloud and its neighbours.
	a.settle(user)
	a.json("GET", regPath(user), nil, http.StatusOK, &reg)
	want := map[string]bool{reg.Drift.Serving: true}
	for _, n := range mustNeighbours(t, r, reg.Drift.Serving) {
		want[n] = true
	}
	for _, in := range reg.Drift.State.Instances {
		if !want[in.Cloud] {
			t.Errorf("an instance on %s, which is neither the serving cloud nor its neighbour", in.Cloud)
		}
	}
	a.json("DELETE", regPath(user), nil, http.StatusOK, nil)
}

func mustNeighbours(t *testing.T, r *rig, cloud string) []string {
	t.Helper()
	ns, err := r.topo.Neighbours(cloud, adjacency)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.Cloud.ID)
	}
	return out
}

// Exit is idempotent: DELETE (and deregister_task) on an ended session
// answers its report again; two at once get the same report.
func TestIdempotentExitAnswersTheSameReport(t *testing.T) {
	r := newRig(t)
	a := r.as(r.tokenA)
	const user = "leaver"
	a.register(user, "quartier-latin", http.StatusCreated)
	a.settle(user)
	a.json("POST", regPath(user)+"/moves?wait=true", `{"region":"bastille"}`, http.StatusOK, nil)

	reports := make([][]byte, 2)
	var wg sync.WaitGroup
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, raw := a.do("DELETE", regPath(user), nil)
			if code != http.StatusOK {
				t.Errorf("DELETE %d: %d %s", i, code, raw)
			}
			reports[i] = raw
		}()
	}
	wg.Wait()
	code, _, again := a.do("DELETE", regPath(user), nil)
	if code != http.StatusOK {
		t.Fatalf("a retried DELETE: %d %s", code, again)
	}
	var first registration
	if err := json.Unmarshal(reports[0], &first); err != nil || first.Drift.State == nil || first.Drift.State.Phase != "ended" ||
		first.Drift.State.Totals.Handovers != 1 || len(first.Drift.State.Instances) != 0 {
		t.Fatalf("report %s", reports[0])
	}
	for i, rep := range [][]byte{reports[1], again} {
		if string(rep) != string(reports[0]) {
			t.Errorf("report %d differs:\n%s\nfirst:\n%s", i+1, rep, reports[0])
		}
	}
	if code, _, raw := a.do("POST", regPath(user)+"/deregister_task", nil); code != http.StatusNoContent {
		t.Errorf("deregister_task on an ended session: %d %s", code, raw)
	}
	a.problem("GET", regPath(user), nil, http.StatusNotFound)
	// A session that never was is 404, not a report.
	a.problem("DELETE", regPath("nobody"), nil, http.StatusNotFound)
}
