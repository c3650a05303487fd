package workflows

import (
	"bytes"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/edgedrift/drift/activities"
)

// continuityLateWrites is continuityChange's version from which a move of
// an app whose state endpoint merges (runtime.State.Merge) carries the
// writes the instance left behind took after its state was read: once its
// drain is over (or sooner, when another move is about to read the state),
// its final state is read and PATCHed, with the state read before the
// switch as the base, into the instance serving then. Before it, those
// writes stayed behind.
const continuityLateWrites = 5

// lateWrites is what a switch left to carry from the instance left behind.
type lateWrites struct {
	from    *Instance // the instance left behind
	base    []byte    // the state read from it before the switch
	moveID  string    // the move whose record says how it went
	after   time.Time // the end of its drain: no request reaches it later
	running bool
}

// Late writes outcomes, as MoveRecord.LateWrites says them.
const (
	LateWritesNone       = "none"        // the instance left behind took no write after the read
	LateWritesCarried    = "carried"     // merged into the instance serving then
	LateWritesNotCarried = "not carried" // followed by why
)

// leaveLateWrites records, after move m switched, that the instance it
// left may take writes until its drain ends, to be carried then.
func (s *session) leaveLateWrites(ctx workflow.Context, m *moveRequest) {
	if from := s.instances[m.from]; from != nil && m.failedCloud == "" {
		s.leaveLateWritesOf(ctx, from, m.state, m.id)
	}
}

// leaveLateWritesOf records that inst, left behind by move moveID after
// base was read from it, may take writes until its drain ends.
func (s *session) leaveLateWritesOf(ctx workflow.Context, inst *Instance, base []byte, moveID string) {
	if !s.lateWritesOn || base == nil || s.in.App.State == nil || !s.in.App.State.Merge {
		return
	}
	d := max(s.continuityOptions().Drain, 0)
	s.late[inst.Name] = &lateWrites{from: inst, base: base, moveID: moveID, after: workflow.Now(ctx).Add(d)}
	workflow.Go(s.root, func(ctx workflow.Context) {
		_ = workflow.Sleep(ctx, d)
		s.dirty = true
	})
}

// carryLateWrites starts carrying the late writes of every instance left
// behind whose drain is over, or of all of them when now is set (a move is
// about to read the serving instance's state, which must hold them
// first). It reports whether any are still to be carried.
func (s *session) carryLateWrites(ctx workflow.Context, now bool) bool {
	if s.st.Phase == "exiting" {
		clear(s.late) // the state goes with the session
		return false
	}
	for _, name := range sortedKeys(s.late) {
		if lw := s.late[name]; !lw.running && (now || !workflow.Now(ctx).Before(lw.after)) {
			s.carry(ctx, lw)
		}
	}
	return len(s.late) > 0
}

// carry reads the final state of the instance left behind (from its
// cloud's worker) and PATCHes it, with the base, into the serving
// instance (from its own); the move's record says how it went.
func (s *session) carry(ctx workflow.Context, lw *lateWrites) {
	lw.running = true
	from, to := lw.from, s.instances[s.st.Serving]
	cloud := from.Cloud
	c := s.continuityOptions()
	workflow.Go(ctx, func(ctx workflow.Context) {
		outcome := func() string {
			switch {
			case from.Status != StatusReady || from.Endpoint.StateURL == "":
				return LateWritesNotCarried + ": " + from.Name + " on " + cloud + " is gone"
			case to == nil || to.Name == from.Name || to.Endpoint.StateURL == "":
				return LateWritesNotCarried + ": the session serves from " + from.Name + " again"
			}
			var final []byte
			err := executeOnCloud(ctx, stateOptions(c.StateTimeout), cloud, "read the late writes of "+s.in.App.Name+" on "+cloud,
				cloudActs.ReadState, activities.ReadStateRequest{URL: from.Endpoint.StateURL, Limit: c.StateLimit}).Get(ctx, &final)
			if err == nil && bytes.Equal(final, lw.base) {
				return LateWritesNone
			}
			if err == nil {
				err = executeOnCloud(ctx, stateOptions(c.StateTimeout), to.Cloud, "carry the late writes of "+s.in.App.Name+" to "+to.Cloud,
					cloudActs.MergeState, activities.MergeStateRequest{URL: to.Endpoint.StateURL, Base: lw.base, Final: final}).Get(ctx, nil)
			}
			if err != nil {
				return LateWritesNotCarried + ": " + RootMessage(err)
			}
			return LateWritesCarried + " to " + to.Cloud
		}()
		s.logger.Info("late writes", "from", cloud, "move", lw.moveID, "outcome", outcome)
		if r := s.moveRecord(lw.moveID); r != nil {
			r.LateWrites = outcome
		}
		delete(s.late, from.Name)
		s.dirty = true
	})
}

// moveRecord is the kept record of move id (nil: no longer kept).
func (s *session) moveRecord(id string) *MoveRecord {
	for i := len(s.st.Moves) - 1; i >= 0; i-- {
		if s.st.Moves[i].ID == id {
			return &s.st.Moves[i]
		}
	}
	return nil
}
