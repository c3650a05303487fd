// Package names is the vocabulary drift's workflows and their clients
// share: task queues, workflow IDs, handler names and search-attribute keys.
// It imports nothing of drift's, so every side can depend on it.
//
// Query names follow one convention: every job answers Progress with its
// live state (a session's, a pipeline run's, an upgrade's, a port's, an
// install's). The names used before that convention are still answered,
// so workflows started earlier and old clients keep working.
package names

import (
	"path"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// TaskQueue is the queue of every workflow and of central activities.
const TaskQueue = "drift"

// CloudQueue is the queue of activities that act on one cloud; the worker
// next to that cloud's Docker Engine or cluster polls it.
func CloudQueue(cloud string) string { return TaskQueue + ".cloud." + cloud }

// NodeQueue is the queue of activities that act on one network node (its
// gateway pairs); the worker on that node polls it.
func NodeQueue(node string) string { return TaskQueue + ".node." + node }

// Workflow IDs: readable, one per thing a user names.

// SessionID is the workflow ID of a user's session of an app. The user
// appears escaped (EscapeUser), so a Unicode user never puts a non-ASCII
// byte into an ID, which Temporal carries in request headers.
func SessionID(user, app string) string { return "session/" + EscapeUser(user) + "/" + app }

// SubscriptionsID is the workflow ID of the namespace's mobility
// subscriptions: every subscription of the session API, its delivery state
// and the session events not yet delivered.
const SubscriptionsID = "subscriptions/mobility"

// PipelineID is the workflow ID of one run of an app's pipeline.
func PipelineID(app, run string) string { return "pipeline/" + app + "/" + run }

// RollbackID is the workflow ID of putting a run's targets back to what
// they ran before it.
func RollbackID(app, run string) string { return "rollback/" + app + "/" + run }

// UndeployID is the workflow ID of removing an app's pipeline deployment.
func UndeployID(app string) string { return "undeploy/" + app }

// UpgradeID is the workflow ID of the upgrade of a component on a cloud.
func UpgradeID(cloud, component string) string { return "upgrade/" + cloud + "/" + component }

// InstallID is the workflow ID of installing a package into a tenant's VM.
func InstallID(tenant, vm, pkg string) string { return "install/" + tenant + "/" + vm + "/" + pkg }

// InventoryID is the workflow ID of a tenant's VM inventory: its VMs,
// their labels and packages, and the desired state of its packages.
func InventoryID(tenant string) string { return "inventory/" + tenant }

// FleetID is the workflow ID of one rollout of a package to a tenant's VMs;
// FleetVMID is the install of that rollout on one VM (its child).
func FleetID(tenant, rollout string) string { return "fleet/" + tenant + "/" + rollout }

// FleetVMID is the workflow ID of a rollout's install on one VM.
func FleetVMID(tenant, rollout, vm string) string { return FleetID(tenant, rollout) + "/" + vm }

// ModelID is the workflow ID of an app's mobility model.
func ModelID(app string) string { return "model/" + app }

// DefaultPortArch is the GOARCH a port targets when none is given.
const DefaultPortArch = "loong64"

// PortID is the workflow ID of porting repo (a git URL or a path) to arch.
func PortID(repo, arch string) string {
	if arch == "" {
		arch = DefaultPortArch
	}
	return "port/" + RepoName(repo) + "/" + arch
}

// RepoName is the last element of a repo URL or path, without .git.
func RepoName(repo string) string {
	name := path.Base(strings.TrimSuffix(strings.TrimRight(strings.ReplaceAll(repo, "\\", "/"), "/"), ".git"))
	if name == "." || name == "/" || name == "" {
		return "module"
	}
	return name
}

// Handler names.
const (
	// ProgressQuery is every job's live state.
	ProgressQuery = "Progress"

	MoveUpdate    = "Move"    // session: Update returning the serving endpoint once ready
	MoveSignal    = "Move"    // session: the same, fire and forget
	ExitSignal    = "Exit"    // session: end it
	ApproveSignal = "Approve" // pipeline: an ApprovalDecision
	RejectSignal  = "Reject"  // pipeline: an ApprovalDecision
	// ApproveUpdate and RejectUpdate decide a pipeline's open approval gate
	// and answer with it (the Signals stay for runs started before them).
	ApproveUpdate = "Approve"
	RejectUpdate  = "Reject"
	ReportSignal  = "Report"  // install: the VM agent's report, delivered by the repository
	ObserveSignal = "Observe" // app model: a handover, by region
	// Upgrade: who lets a switch held at the promotion gate go, and why.
	PromoteUpdate = "Promote"
	// Upgrade: switch back to the env upgraded from, within the rollback
	// window; returns once it serves again.
	RollbackUpdate = "Rollback"
	ModelQuery     = "Model" // app model: the model itself

	DeclareUpdate      = "Register"     // inventory: the admin declares a VM (answers with it, or why not)
	RegisterSignal     = "Register"     // inventory: a VM's agent registers (many at once: no answer)
	ForgetUpdate       = "Forget"       // inventory: drop a VM
	GatewayUpdate      = "Gateway"      // inventory: place the tenant's gateway pair
	RolloutUpdate      = "Rollout"      // inventory: start a fleet rollout, returns its workflow ID
	DesireUpdate       = "Desire"       // inventory: set or drop a package's desired state
	InstalledSignal    = "Installed"    // inventory: what a VM's agent has now (from its reports)
	RolloutEndedSignal = "RolloutEnded" // inventory: how a rollout ended

	RegisterUpdate     = "Register"      // session: open it, or answer for the open one (same or conflict)
	ReregisterUpdate   = "Reregister"    // session: change what its registration says (PUT)
	AdoptUpdate        = "Adopt"         // session: take a release; its pre-deploys and next handover run it
	EventsSignal       = "Events"        // subscriptions: a batch of session events, in order
	SubscribeUpdate    = "Subscribe"     // subscriptions: add one
	ResubscribeUpdate  = "Resubscribe"   // subscriptions: replace one (PUT), resuming it when suspended
	UnsubscribeUpdate  = "Unsubscribe"   // subscriptions: remove one
	SubscriptionsQuery = "Subscriptions" // subscriptions: every subscription and its delivery state
)

// Query names of the live state before the Progress convention, still
// answered: a session's State, a port's Report and an install's Status.
const (
	LegacySessionQuery = "State"
	LegacyPortQuery    = "Report"
	LegacyInstallQuery = "Status"
)

// Workflow type names other processes start by name.
const (
	AppModelWorkflow      = "AppModel"
	SubscriptionsWorkflow = "MobilitySubscriptions"
)

// Search attributes drift's workflows set, so the Web UI can filter by them.
var (
	UserKey  = temporal.NewSearchAttributeKeyKeyword("DriftUser")
	AppKey   = temporal.NewSearchAttributeKeyKeyword("DriftApp")
	CloudKey = temporal.NewSearchAttributeKeyKeyword("DriftCloud")
	KindKey  = temporal.NewSearchAttributeKeyKeyword("DriftKind")
)

// SearchAttributes are the attributes a namespace must have before drift's
// workflows run (their tasks fail with BadSearchAttributes otherwise).
var SearchAttributes = map[string]enums.IndexedValueType{
	UserKey.GetName():  enums.INDEXED_VALUE_TYPE_KEYWORD,
	AppKey.GetName():   enums.INDEXED_VALUE_TYPE_KEYWORD,
	CloudKey.GetName(): enums.INDEXED_VALUE_TYPE_KEYWORD,
	KindKey.GetName():  enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// Kinds of workflow, the values of KindKey.
const (
	KindSession       = "session"
	KindPipeline      = "pipeline"
	KindUpgrade       = "upgrade"
	KindPort          = "port"
	KindInstall       = "install"
	KindModel         = "model"
	KindFleet         = "fleet"
	KindInventory     = "inventory"
	KindSubscriptions = "subscriptions"
)
