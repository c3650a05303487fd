package mecapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/workflows"
)

// subscriptionTypes are the values GET /subscriptions?subscriptionType=
// takes: MEC 021's short names and the type names.
var subscriptionTypes = map[string]string{
	"mobility_proc": amsi.MobilityProcedureSubscription, amsi.MobilityProcedureSubscription: amsi.MobilityProcedureSubscription,
	"adj_app_info": amsi.AdjacentAppInfoSubscription, amsi.AdjacentAppInfoSubscription: amsi.AdjacentAppInfoSubscription,
}

// readSubscription decodes and checks a subscription body.
func (a *API) readSubscription(w http.ResponseWriter, r *http.Request) (amsi.Subscription, bool) {
	var sub amsi.Subscription
	if p := decode(w, r, &sub); p != nil {
		writeProblem(w, r, *p)
		return sub, false
	}
	bad := amsi.CheckSubscription(&sub, time.Now())
	if sub.CallbackReference != "" {
		if err := a.opts.Callbacks.Check(sub.CallbackReference); err != nil {
			bad = append(bad, amsi.FieldError{Param: "callbackReference", Reason: err.Error()})
		}
	}
	if len(bad) > 0 {
		writeProblem(w, r, invalid(bad))
		return sub, false
	}
	return sub, true
}

func (a *API) subscribe(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.readSubscription(w, r)
	if !ok {
		return
	}
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	info, err := a.drift.Subscribe(ctx, workflows.SubscribeRequest{ID: newID("sub-"), Owner: callerOf(r.Context()).Client, Subscription: sub})
	if err != nil {
		writeProblem(w, r, fromError(err, "subscription"))
		return
	}
	w.Header().Set("Location", amsi.SubscriptionHref(info.ID))
	writeJSON(w, http.StatusCreated, info.Subscription)
}

// own lists the caller's subscriptions.
func (a *API) own(w http.ResponseWriter, r *http.Request) ([]workflows.SubscriptionInfo, bool) {
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	all, err := a.drift.Subscriptions(ctx)
	if err != nil {
		writeProblem(w, r, fromError(err, "the subscriptions"))
		return nil, false
	}
	me := callerOf(r.Context()).Client
	var out []workflows.SubscriptionInfo
	for _, s := range all {
		if s.Owner == me {
			out = append(out, s)
		}
	}
	return out, true
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if p := unsupportedQuery(q, "subscriptionType"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	only := ""
	if v := q.Get("subscriptionType"); v != "" {
		if only = subscriptionTypes[v]; only == "" {
			writeProblem(w, r, invalid([]amsi.FieldError{{Param: "subscriptionType", Reason: fmt.Sprintf("%q: want mobility_proc or adj_app_info", v)}}))
			return
		}
	}
	subs, ok := a.own(w, r)
	if !ok {
		return
	}
	self := amsi.SubscriptionsPath
	if r.URL.RawQuery != "" {
		self += "?" + r.URL.RawQuery
	}
	out := amsi.SubscriptionLinkList{Links: amsi.SubscriptionLinks{Self: amsi.LinkType{Href: self}}, Subscription: []amsi.SubscriptionLink{}}
	for _, s := range subs {
		if only == "" || s.Subscription.SubscriptionType == only {
			out.Subscription = append(out.Subscription, amsi.SubscriptionLink{Href: amsi.SubscriptionHref(s.ID), SubscriptionType: s.Subscription.SubscriptionType})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// mine finds one of the caller's subscriptions; another client's is a
// 404, as if it did not exist.
func (a *API) mine(w http.ResponseWriter, r *http.Request) (workflows.SubscriptionInfo, bool) {
	subs, ok := a.own(w, r)
	if !ok {
		return workflows.SubscriptionInfo{}, false
	}
	id := r.PathValue("subscriptionId")
	for _, s := range subs {
		if s.ID == id {
			return s, true
		}
	}
	writeProblem(w, r, noSubscription(id, callerOf(r.Context()).Client))
	return workflows.SubscriptionInfo{}, false
}

func noSubscription(id, client string) Problem {
	return problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("client %s has no subscription %q", client, id))
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.mine(w, r); ok {
		writeJSON(w, http.StatusOK, s.Subscription)
	}
}

// putSubscription replaces a subscription (its type stays); a suspended
// one is resumed with what it missed.
func (a *API) putSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("subscriptionId")
	sub, ok := a.readSubscription(w, r)
	if !ok {
		return
	}
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	me := callerOf(r.Context()).Client
	info, err := a.drift.Resubscribe(ctx, workflows.SubscribeRequest{ID: id, Owner: me, Subscription: sub})
	if err != nil {
		p := fromError(err, "subscription "+id)
		if p.Status == http.StatusNotFound {
			p = noSubscription(id, me)
		}
		writeProblem(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, info.Subscription)
}

func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("subscriptionId")
	ctx, cancel := a.withTimeout(r)
	defer cancel()
	me := callerOf(r.Context()).Client
	if err := a.drift.Unsubscribe(ctx, id, me); err != nil {
		p := fromError(err, "subscription "+id)
		if p.Status == http.StatusNotFound {
			p = noSubscription(id, me)
		}
		writeProblem(w, r, p)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
