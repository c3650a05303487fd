package workflows

import (
	"cmp"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/runtime"
)

// replaceQuietly is the workflow.GetVersion change ID under which a session
// whose serving instance runs an older release than the one it adopted
// replaces it on the same cloud, make before break, once no move came for
// the Adopt's replaceAfter: a user who never moves gets the release too.
// Before it, the serving instance kept its release until the next move.
const replaceQuietly = "sessions-replace-quietly"

// DefaultReplaceAfter is how long a session must have had no move before
// its serving instance is replaced with an adopted release.
const DefaultReplaceAfter = time.Minute

// FromReplace: the session replaced its serving instance with one of the
// release it adopted, on the same cloud.
const FromReplace = "replace"

// spare is the instance that replaces the serving one: deployed beside it
// on its cloud, given its state, then switched to.
type spare struct {
	inst  *Instance
	move  string // the record of the replacement
	state []byte // the state carried into it (the base of late writes)
	done  bool   // deployed (and given the state), or failed
	err   error
}

// replaceWhenQuiet starts or finishes the replacement of a serving
// instance that runs an older release than the session's.
func (s *session) replaceWhenQuiet(ctx workflow.Context) {
	if !s.replaceOn {
		return
	}
	if s.spare != nil {
		s.finishSpare(ctx)
		return
	}
	serving := s.instances[s.st.Serving]
	if s.st.Phase != "serving" || s.exit || len(s.moves) > 0 || serving == nil || serving.Status != StatusReady ||
		s.ops[serving.Cloud] != nil || !s.behind(serving) || s.st.ReplaceAfter < 0 || s.late[serving.Name] != nil {
		return
	}
	at := s.st.AdoptedAt
	if n := len(s.st.Handovers); n > 0 && s.st.Handovers[n-1].At.After(at) {
		at = s.st.Handovers[n-1].At
	}
	at = at.Add(cmp.Or(s.st.ReplaceAfter, DefaultReplaceAfter))
	if workflow.Now(ctx).Before(at) {
		s.wakeAt(at)
		return
	}
	s.startSpare(ctx, serving)
}

// wakeAt wakes the main loop at t (once per t).
func (s *session) wakeAt(t time.Time) {
	if s.quietWake.Equal(t) {
		return
	}
	s.quietWake = t
	workflow.Go(s.root, func(ctx workflow.Context) {
		_ = workflow.Sleep(ctx, t.Sub(workflow.Now(ctx)))
		s.dirty = true
	})
}

// startSpare deploys the session's release beside the serving instance,
// under the other of the cloud's two instance names, and carries the
// state into it; subscribers hear of it as a move that begins.
func (s *session) startSpare(ctx workflow.Context, serving *Instance) {
	cloud := serving.Cloud
	name := runtime.InstanceName(s.in.App.Name, s.in.User, cloud, "b")
	if serving.Name == name {
		name = s.instanceName(cloud)
	}
	sp := &spare{inst: &Instance{Cloud: cloud, Name: name, Role: RoleServe, Status: StatusDeploying, Runs: s.runs()}}
	sp.move = fmt.Sprintf("replace-%s-%d", shortID(chainID(ctx)), s.st.Events+1)
	s.spare = sp
	release := firstOf(s.st.Release, "adopted")
	s.trigger(ctx, MoveRecord{ID: sp.move, Source: FromReplace, Region: s.st.Region, FromCloud: cloud, ToCloud: cloud,
		ArrivedAt: workflow.Now(ctx), Reason: fmt.Sprintf("release %s replaces %s on the same cloud", release, serving.Runs)}, name)
	s.logger.Info("replacing the serving instance", "cloud", cloud, "old", serving.Name, "new", name, "release", release)
	req := s.deployRequest(cloud, name)
	fromURL := serving.Endpoint.StateURL
	c := s.continuityOptions()
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer func() { sp.done, s.dirty = true, true }()
		summary := fmt.Sprintf("deploy %s on %s beside %s (release %s)", s.in.App.Name, cloud, serving.Name, release)
		if sp.err = executeOnCloud(ctx, deployOptions, cloud, summary, cloudActs.DeployInstance, req).Get(ctx, &sp.inst.Endpoint); sp.err != nil {
			return
		}
		if s.continuity && s.in.App.State != nil {
			sp.state, sp.err = s.copyState(ctx, c, cloud, fromURL, cloud, sp.inst.Endpoint.StateURL)
		}
	})
}

// finishSpare switches to a ready spare, or gives it up when it failed or
// the session moved on meanwhile (a move, an exit, another release).
func (s *session) finishSpare(ctx workflow.Context) {
	sp := s.spare
	if !sp.done {
		return
	}
	s.spare = nil
	old := s.instances[sp.inst.Cloud]
	why := ""
	switch {
	case sp.err != nil:
		why = RootMessage(sp.err)
	case s.st.Phase != "serving" || s.exit || len(s.moves) > 0 || s.st.Serving != sp.inst.Cloud || old == nil || s.ops[sp.inst.Cloud] != nil:
		why = "the session moved on meanwhile"
	case sp.inst.Runs != s.runs():
		why = "another release was adopted meanwhile"
	}
	if r := s.moveRecord(sp.move); r != nil {
		r.FinishedAt = workflow.Now(ctx)
		r.Status, r.Error = MoveCompleted, why
		if why != "" {
			r.Status = MoveFailed
		}
	}
	e := amsi.Event{Kind: amsi.KindMove, MoveID: sp.move, Region: s.st.Region, FromCloud: sp.inst.Cloud, ToCloud: sp.inst.Cloud, Instance: sp.inst.Name}
	if why != "" {
		s.logger.Warn("replacement given up", "cloud", sp.inst.Cloud, "why", why)
		e.Status, e.Error = amsi.MoveFailed, why
		s.emit(ctx, e)
		s.retire(ctx, sp.inst, 0)
		if sp.err != nil {
			s.st.ReplaceAfter = -1 // not again with this release: the next move takes it
		}
		return
	}
	sp.inst.Status = StatusReady
	s.instances[sp.inst.Cloud] = sp.inst
	s.st.Endpoint = sp.inst.Endpoint
	if r := s.moveRecord(sp.move); r != nil {
		r.Endpoint, r.Warm = sp.inst.Endpoint, true
	}
	e.Status, e.Endpoint, e.Warm = amsi.MoveCompleted, sp.inst.Endpoint, true
	s.emit(ctx, e)
	s.stopWatch()
	s.watched = "" // the new instance is watched from now on
	s.logger.Info("serving instance replaced", "cloud", sp.inst.Cloud, "old", old.Name, "new", sp.inst.Name, "runs", sp.inst.Runs)
	if sp.state != nil {
		s.leaveLateWritesOf(ctx, old, sp.state, sp.move)
	}
	s.retire(ctx, old, s.continuityOptions().Drain)
}

// retire destroys an instance no longer in the session's instances after
// drain, once its late writes are carried; Exit's sweep takes it if the
// session ends first.
func (s *session) retire(ctx workflow.Context, inst *Instance, drain time.Duration) {
	inst.Role, inst.DrainUntil = "", workflow.Now(ctx).Add(max(drain, 0))
	s.retired[inst.Name] = inst
	workflow.Go(s.root, func(ctx workflow.Context) {
		_ = workflow.Sleep(ctx, max(drain, 0))
		_ = workflow.Await(ctx, func() bool { return s.late[inst.Name] == nil })
		inst.Status = StatusDestroying
		err := executeOnCloud(ctx, destroyOptions, inst.Cloud, fmt.Sprintf("destroy %s on %s (replaced)", inst.Name, inst.Cloud),
			cloudActs.DestroyInstance, inst.Name).Get(ctx, nil)
		if err != nil {
			s.logger.Warn("replaced instance left to the exit sweep", "instance", inst.Name, "error", err)
		}
		delete(s.retired, inst.Name)
		s.dirty = true
	})
}
