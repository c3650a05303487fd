package amsi

import (
	"fmt"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// Event kinds.
const (
	KindMove     = "move"     // a move taken up, completed or failed
	KindAdjacent = "adjacent" // the session's ready pre-deploys changed
)

// Event is one thing a session tells the subscribers of the API, whatever
// started it (the API, the CLI, a Signal). A session numbers its events
// (Seq, from 1, across continue-as-new) and publishes them in order; Chain
// (its first run's id) tells one session from a later one of the same user
// and app, so (Chain, Seq) names an event everywhere.
type Event struct {
	Session       string    `json:"session"` // the workflow id
	Chain         string    `json:"chain"`
	Seq           int64     `json:"seq"`
	At            time.Time `json:"at"`
	User          string    `json:"user"`
	App           string    `json:"app"`
	AssociateType int       `json:"associateType,omitempty"`
	Kind          string    `json:"kind"`

	// A move's.
	MoveID     string           `json:"moveId,omitempty"`
	Status     int              `json:"status,omitempty"` // MoveTriggered, MoveCompleted or MoveFailed
	Region     string           `json:"region,omitempty"`
	FromCloud  string           `json:"fromCloud,omitempty"`
	ToCloud    string           `json:"toCloud,omitempty"`
	Instance   string           `json:"instance,omitempty"` // the target instance's name
	Endpoint   runtime.Endpoint `json:"endpoint,omitzero"`
	Warm       bool             `json:"warm,omitempty"`
	SwitchTime time.Duration    `json:"switchTime,omitempty"`
	Error      string           `json:"error,omitempty"`
	// Reason is a failover's: why the session left FromCloud.
	Reason string `json:"reason,omitempty"`
	// ContextTransferState is a completed move's, when the app has state
	// (ContextTransferred or ContextNotTransferred).
	ContextTransferState *int `json:"contextTransferState,omitempty"`

	// The ready pre-deploys' (KindAdjacent).
	Adjacent []Instance `json:"adjacent,omitempty"`
}

// Instance is one instance of a session on a cloud.
type Instance struct {
	Cloud    string           `json:"cloud"`
	Name     string           `json:"name"`
	Endpoint runtime.Endpoint `json:"endpoint"`
}

// ID names the event everywhere.
func (e Event) ID() string { return fmt.Sprintf("%s/%d", e.Chain, e.Seq) }
