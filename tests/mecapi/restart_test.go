package mecapi

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/edgedrift/drift/internal/names"
)

// The API process is killed mid-run and started again: the subscriptions,
// the move records and a move in flight at the kill survive it, a second
// API process (a replica) sees the same, and every move that completed —
// asked through either API process, the CLI or a Move signal, before,
// during or after the restart — is notified TRIGGERED then COMPLETED, at
// least once, each with a notification id to de-duplicate by.
func TestRestartOfTheAPIKeepsSubscriptionsMovesAndNotifications(t *testing.T) {
	r := newRig(t)
	a := r.as(r.tokenA)
	cb := newReceiver(t, false)
	hdr := a.json("POST", "/amsi/v1/subscriptions", map[string]any{"subscriptionType": "MobilityProcedureSubscription",
		"callbackReference": cb.url("/moves"), "filterCriteria": map[string]any{"appInstanceId": "hello", "mobilityStatus": []int{1, 2, 3}}}, http.StatusCreated, nil)
	subHref := hdr.Get("Location")

	users := []string{"ana", "ben", "chloé", "dmitri"}
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() { defer wg.Done(); a.register(u, "quartier-latin", http.StatusCreated); a.settle(u) }()
	}
	wg.Wait()

	// Before the restart: a move each through the API, one by the CLI, one
	// by a Move signal.
	var apiMoves []string
	for _, u := range users {
		var m move
		a.json("POST", regPath(u)+"/moves?wait=true", `{"region":"bastille"}`, http.StatusOK, &m)
		apiMoves = append(apiMoves, m.Links["self"].Href)
	}
	r.cliMove(t, "ana", "montparnasse")
	r.signalMove(t, "ben", "montparnasse")

	// A cold move in flight when the API dies (edge-montmartre is no
	// neighbour of edge-bastille: nothing of chloé's is there yet), and
	// moves while it is down.
	code, _, raw := a.do("POST", regPath("chloé")+"/moves", `{"region":"montmartre"}`)
	var inFlight move
	if json.Unmarshal(raw, &inFlight) != nil || inFlight.Warm != nil && *inFlight.Warm || code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("the cold move answered %d %s", code, raw)
	}
	if inFlight.Status != "TRIGGERED" {
		t.Logf("the cold move completed before the API answered (%s): not in flight at the kill", inFlight.Status)
	}
	r.killAPI()
	r.cliMove(t, "dmitri", "montmartre")
	r.signalMove(t, "ana", "bastille")
	r.startAPI()

	// The subscription and every move record are there, in the restarted
	// process and in a replica.
	replica := r.replica(r.tokenA)
	for _, api := range []*outsider{a, replica} {
		var list struct{ Subscription []struct{ Href string } }
		api.json("GET", "/amsi/v1/subscriptions", nil, http.StatusOK, &list)
		if len(list.Subscription) != 1 || list.Subscription[0].Href != subHref {
			t.Fatalf("subscriptions after the restart: %+v", list)
		}
		for _, href := range append(apiMoves, inFlight.Links["self"].Href) {
			waitFor(t, 2*time.Minute, href+" to complete", func() bool {
				var m move
				api.json("GET", href, nil, http.StatusOK, &m)
				if m.Status == "FAILED" {
					t.Fatalf("%s failed: %s", href, m.Error)
				}
				return m.Status == "COMPLETED"
			})
		}
	}
	// One more through each API process.
	a.json("POST", regPath("dmitri")+"/moves?wait=true", `{"region":"quartier-latin"}`, http.StatusOK, nil)
	replica.json("POST", regPath("chloé")+"/moves?wait=true", `{"region":"quartier-latin"}`, http.StatusOK, nil)

	// Every move of every session — whatever started it — completed and was
	// notified TRIGGERED and COMPLETED.
	sources := map[string]int{}
	var all []move
	for _, u := range users {
		var moves []move
		waitFor(t, 2*time.Minute, "the moves of "+u+" to end", func() bool {
			a.json("GET", regPath(u)+"/moves", nil, http.StatusOK, &moves)
			for _, m := range moves {
				if m.Status != "COMPLETED" {
					return false
				}
			}
			return true
		})
		all = append(all, moves...)
	}
	for _, m := range all {
		sources[m.Source]++
	}
	if len(all) != 11 || sources["update"] != 9 || sources["signal"] != 2 {
		t.Fatalf("%d moves by source %v, want 11: 9 by update (API processes and CLI), 2 by signal", len(all), sources)
	}
	got := cb.await(t, 2*time.Minute, "TRIGGERED and COMPLETED of all 11 moves", func(rs []received) bool {
		for _, m := range all {
			n := moveNotes(rs, m.MoveID)
			if len(n["TRIGGERED"]) == 0 || len(n["COMPLETED"]) == 0 {
				return false
			}
		}
		return true
	})
	// In order per move, and a notification sent twice keeps its id.
	byID := map[string]string{}
	for _, m := range all {
		n := moveNotes(got, m.MoveID)
		if !n["TRIGGERED"][0].stamp().Before(n["COMPLETED"][0].stamp()) && !n["TRIGGERED"][0].stamp().Equal(n["COMPLETED"][0].stamp()) {
			t.Errorf("%s: COMPLETED stamped before TRIGGERED", m.MoveID)
		}
		if n["COMPLETED"][0].n.Drift.User == "" || n["COMPLETED"][0].n.TargetAppInfo == nil {
			t.Errorf("%s: COMPLETED notification %s", m.MoveID, n["COMPLETED"][0].raw)
		}
	}
	for _, n := range got {
		key := n.n.Drift.MoveID + "/" + n.n.Drift.Status
		if id, seen := byID[key]; seen && id != n.n.Drift.NotificationID {
			t.Errorf("%s delivered twice with ids %s and %s", key, id, n.n.Drift.NotificationID)
		}
		byID[key] = n.n.Drift.NotificationID
	}
	t.Logf("%d notifications for %d moves (%d duplicates)", len(got), len(all), len(got)-len(byID))

	for _, u := range users {
		a.json("DELETE", regPath(u), nil, http.StatusOK, nil)
	}
}

// cliMove moves user's session with `drift session move`, as an operator.
func (r *rig) cliMove(t *testing.T, user, region string) {
	t.Helper()
	out, err := exec.Command(r.drift, "session", "move", region, "--user", user, "--app", "hello", "--address", r.address).CombinedOutput()
	if err != nil {
		t.Fatalf("drift session move %s --user %s: %v\n%s", region, user, err, out)
	}
}

// signalMove sends the Move signal, as a fire-and-forget Temporal client.
func (r *rig) signalMove(t *testing.T, user, region string) {
	t.Helper()
	if err := r.c.SignalWorkflow(ctxFor(t, time.Minute), names.SessionID(user, "hello"), "", names.MoveSignal, region); err != nil {
		t.Fatal(err)
	}
}
