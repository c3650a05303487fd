// Package amsi is the data model of drift's Application Mobility Service
// API, after ETSI GS MEC 021 v2.2.1: the resources and notifications as
// they go over the wire (field names as the spec spells them, drift's own
// fields in a "drift" object), the events sessions publish, and the book of
// subscriptions — which events each one hears of, in what order, what was
// delivered — that the MobilitySubscriptions workflow keeps. Pure logic:
// no Temporal, no HTTP.
package amsi

import (
	"encoding/json"
	"time"

	"github.com/edgedrift/drift/internal/runtime"
)

// BasePath is where the API lives; links in resources and notifications
// are paths below it.
const BasePath = "/amsi/v1"

// TimeStamp is MEC's time: seconds and nanoseconds since the Unix epoch.
type TimeStamp struct {
	Seconds     int64 `json:"seconds"`
	NanoSeconds int32 `json:"nanoSeconds"`
}

// Stamp converts t; the zero time gives nil.
func Stamp(t time.Time) *TimeStamp {
	if t.IsZero() {
		return nil
	}
	return &TimeStamp{Seconds: t.Unix(), NanoSeconds: int32(t.Nanosecond())}
}

// Time converts back.
func (t TimeStamp) Time() time.Time { return time.Unix(t.Seconds, int64(t.NanoSeconds)).UTC() }

// LinkType is a hyperlink; Href is a path on the API.
type LinkType struct {
	Href string `json:"href"`
}

// AssociateID names a device (MEC 012's AssociateId). drift takes Value as
// the session's user and keeps Type as given.
type AssociateID struct {
	Type  int    `json:"type"`
	Value string `json:"value"`
}

// AssociateId types (MEC 012). TypeUser (0, "reserved" in the spec) is what
// drift reports for sessions opened without a MEC registration (CLI,
// Temporal clients): Value is then a drift user name.
const (
	TypeUser          = 0
	TypeUEIPv4        = 1
	TypeUEIPv6        = 2
	TypeNATedIP       = 3
	TypeGTPTEID       = 4
	maxAssociateIDTyp = TypeGTPTEID
)

// App mobility service levels (RegistrationInfo.deviceInformation).
const (
	MobilityNotAllowed          = 1 // drift refuses moves of the session
	MobilityWithConfirmation    = 2 // drift's move request is the confirmation
	MobilityWithoutConfirmation = 3
)

// Context transfer states (RegistrationInfo.deviceInformation).
const (
	ContextNotTransferred = 0
	ContextTransferred    = 1
)

// Mobility statuses of a MobilityProcedureNotification: a move taken up,
// done, or given up.
const (
	MoveTriggered = 1 // INTERHOST_MOVEOUT_TRIGGERED
	MoveCompleted = 2 // INTERHOST_MOVEOUT_COMPLETED
	MoveFailed    = 3 // INTERHOST_MOVEOUT_FAILED
)

// StatusName is the spec's name of a mobility status ("TRIGGERED", …).
func StatusName(status int) string {
	switch status {
	case MoveTriggered:
		return "TRIGGERED"
	case MoveCompleted:
		return "COMPLETED"
	case MoveFailed:
		return "FAILED"
	}
	return "UNKNOWN"
}

// ServiceConsumerID is who registers: drift registers app instances, so
// AppInstanceID is the app's name; registrations by a MEC platform (MepID)
// are refused.
type ServiceConsumerID struct {
	AppInstanceID string `json:"appInstanceId,omitempty"`
	MepID         string `json:"mepId,omitempty"`
}

// DeviceInformation is the device a registration serves.
type DeviceInformation struct {
	AssociateID             AssociateID `json:"associateId"`
	AppMobilityServiceLevel int         `json:"appMobilityServiceLevel,omitempty"`
	// ContextTransferState is a pointer: 0 (NOT_TRANSFERRED) is a value.
	ContextTransferState *int `json:"contextTransferState,omitempty"`
}

// RegistrationInfo is a registered application mobility service: in
// drift, one user's session of one app.
type RegistrationInfo struct {
	// AppMobilityServiceID is assigned by drift (RegistrationID): absent in
	// POST, present otherwise.
	AppMobilityServiceID string              `json:"appMobilityServiceId,omitempty"`
	ServiceConsumerID    ServiceConsumerID   `json:"serviceConsumerId"`
	DeviceInformation    []DeviceInformation `json:"deviceInformation,omitempty"`
	// ExpiryTime is seconds from acceptance after which the session ends; 0
	// or absent: never.
	ExpiryTime uint32 `json:"expiryTime,omitempty"`
	// Drift asks for the session (POST) and tells where it serves.
	Drift *Registration `json:"drift,omitempty"`
}

// Registration is drift's extension of RegistrationInfo. App and Region
// are required in a POST; Neighbours and PreDeploy default to the API's
// policies. The other fields are answers: a PUT may send them back and they
// are ignored, except that App, Region, Neighbours and PreDeploy must then
// be what the session was registered with.
type Registration struct {
	App        *AppRequest `json:"app,omitempty"`
	Region     string      `json:"region,omitempty"`
	Neighbours string      `json:"neighbours,omitempty"`
	PreDeploy  string      `json:"preDeploy,omitempty"`

	User     string            `json:"user,omitempty"`
	Session  string            `json:"session,omitempty"` // the workflow id
	Phase    string            `json:"phase,omitempty"`   // starting, serving, exiting, ended
	Serving  string            `json:"serving,omitempty"` // the serving cloud
	Current  string            `json:"currentRegion,omitempty"`
	Endpoint *runtime.Endpoint `json:"endpoint,omitempty"`
	Image    string            `json:"image,omitempty"` // pinned in the center registry
	// ExpiresAt is when the registration ends the session (expiryTime).
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// State is the session's full state (GET of one registration) or its
	// report (DELETE): the workflow's own JSON, durations in nanoseconds.
	State json.RawMessage     `json:"state,omitempty"`
	Links map[string]LinkType `json:"_links,omitempty"`
}

// AppRequest is the app of a registration: an image serving HTTP on a port
// (name, image, port — default 8080 —, health), or a compose file's text
// and the service in it ("" for its only one). Health, when set, overrides
// the compose file's.
type AppRequest struct {
	Name    string `json:"name,omitempty"`
	Image   string `json:"image,omitempty"`
	Port    int    `json:"port,omitempty"`
	Health  string `json:"health,omitempty"`
	Compose string `json:"compose,omitempty"`
	Service string `json:"service,omitempty"`
}

// Subscription types and the notification types they bring.
const (
	MobilityProcedureSubscription = "MobilityProcedureSubscription"
	AdjacentAppInfoSubscription   = "AdjacentAppInfoSubscription"

	MobilityProcedureNotification = "MobilityProcedureNotification"
	AdjacentAppInfoNotification   = "AdjacentAppInfoNotification"
	ExpiryNotification            = "ExpiryNotification"
	TestNotification              = "TestNotification"
)

// Subscription is a MobilityProcedureSubscription or an
// AdjacentAppInfoSubscription, told apart by SubscriptionType (the latter's
// filter has only appInstanceId).
type Subscription struct {
	Links                   *SubscriptionLinks `json:"_links,omitempty"`
	SubscriptionType        string             `json:"subscriptionType"`
	CallbackReference       string             `json:"callbackReference,omitempty"`
	RequestTestNotification bool               `json:"requestTestNotification,omitempty"`
	// WebsockNotifConfig is refused: drift delivers over HTTP only.
	WebsockNotifConfig json.RawMessage `json:"websockNotifConfig,omitempty"`
	FilterCriteria     FilterCriteria  `json:"filterCriteria"`
	ExpiryDeadline     *TimeStamp      `json:"expiryDeadline,omitempty"`
	// Drift tells the subscription's delivery state (answers only).
	Drift *Delivery `json:"drift,omitempty"`
}

// SubscriptionLinks is a subscription's self link.
type SubscriptionLinks struct {
	Self LinkType `json:"self"`
}

// FilterCriteria pick the events a subscription hears of; an absent field
// matches everything, except MobilityStatus, which defaults to
// [TRIGGERED] as the spec says.
type FilterCriteria struct {
	AppInstanceID  string        `json:"appInstanceId,omitempty"`
	AssociateID    []AssociateID `json:"associateId,omitempty"`
	MobilityStatus []int         `json:"mobilityStatus,omitempty"`
}

// Subscription statuses (drift's extension).
const (
	Active    = "ACTIVE"
	Suspended = "SUSPENDED" // a delivery failed after every retry; a PUT resumes it
	Expired   = "EXPIRED"   // its ExpiryNotification is on its way; then it is gone
)

// Delivery is drift's extension of a subscription: how its deliveries go.
type Delivery struct {
	Status      string    `json:"status"`
	Delivered   int64     `json:"delivered"`
	Failed      int64     `json:"failed"`      // deliveries given up after every retry
	Undelivered int64     `json:"undelivered"` // notifications it will never get (suspended or too far behind)
	Pending     int64     `json:"pending"`     // notifications waiting for it
	LastError   string    `json:"lastError,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	DeliveredAt time.Time `json:"lastDeliveredAt,omitzero"`
}

// SubscriptionLinkList answers GET /subscriptions.
type SubscriptionLinkList struct {
	Links        SubscriptionLinks  `json:"_links"`
	Subscription []SubscriptionLink `json:"subscription"`
}

// SubscriptionLink is one subscription in the list.
type SubscriptionLink struct {
	Href             string `json:"href"`
	SubscriptionType string `json:"subscriptionType"`
}

// NotificationLinks name the subscription a notification is for.
type NotificationLinks struct {
	Subscription LinkType `json:"subscription"`
}

// CommunicationInterface is where an app instance answers.
type CommunicationInterface struct {
	IPAddresses []IPAddress `json:"ipAddresses,omitempty"`
}

// IPAddress is one host and port.
type IPAddress struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// TargetAppInfo is the instance a move goes to.
type TargetAppInfo struct {
	AppInstanceID string                  `json:"appInstanceId"`
	CommInterface *CommunicationInterface `json:"commInterface,omitempty"`
}

// Notice is drift's extension of every notification. NotificationID is
// the same on every delivery attempt of one notification: receivers
// de-duplicate by it (deliveries are at least once).
type Notice struct {
	NotificationID       string `json:"notificationId"`
	AppMobilityServiceID string `json:"appMobilityServiceId,omitempty"`
	User                 string `json:"user,omitempty"`
	App                  string `json:"app,omitempty"`
	MoveID               string `json:"moveId,omitempty"`
	Status               string `json:"status,omitempty"` // TRIGGERED, COMPLETED, FAILED
	Region               string `json:"region,omitempty"`
	FromCloud            string `json:"fromCloud,omitempty"`
	ToCloud              string `json:"toCloud,omitempty"`
	Endpoint             string `json:"endpoint,omitempty"`
	Warm                 *bool  `json:"warm,omitempty"`
	SwitchTime           string `json:"switchTime,omitempty"` // Go duration text
	Error                string `json:"error,omitempty"`
	// Reason is a failover's: why the session left FromCloud.
	Reason string `json:"reason,omitempty"`
	// ContextTransferState says whether the app's state was carried
	// (MEC 021's values: 1 TRANSFERRED, 0 NOT_TRANSFERRED).
	ContextTransferState *int `json:"contextTransferState,omitempty"`
	// Links: the move and the registration it belongs to.
	Links map[string]LinkType `json:"_links,omitempty"`
}

// MobilityProcedureNotificationBody tells of a move: taken up, completed
// or failed.
type MobilityProcedureNotificationBody struct {
	NotificationType string            `json:"notificationType"`
	TimeStamp        *TimeStamp        `json:"timeStamp,omitempty"`
	AssociateID      []AssociateID     `json:"associateId"`
	MobilityStatus   int               `json:"mobilityStatus"`
	TargetAppInfo    *TargetAppInfo    `json:"targetAppInfo,omitempty"`
	Links            NotificationLinks `json:"_links"`
	Drift            Notice            `json:"drift"`
}

// AdjacentAppInfo is one pre-deployed instance on a neighbour cloud.
type AdjacentAppInfo struct {
	AppInstanceID string                   `json:"appInstanceId"`
	CommInterface []CommunicationInterface `json:"commInterface,omitempty"`
}

// AdjacentAppInfoNotificationBody tells that a session's ready instances on
// neighbour clouds changed.
type AdjacentAppInfoNotificationBody struct {
	NotificationType string            `json:"notificationType"`
	TimeStamp        *TimeStamp        `json:"timeStamp,omitempty"`
	AssociateID      []AssociateID     `json:"associateId,omitempty"`
	AdjacentAppInfo  []AdjacentAppInfo `json:"adjacentAppInfo"`
	Links            NotificationLinks `json:"_links"`
	Drift            Notice            `json:"drift"`
}

// ExpiryNotificationBody tells that a subscription reached its
// expiryDeadline and is gone.
type ExpiryNotificationBody struct {
	NotificationType string            `json:"notificationType"`
	TimeStamp        *TimeStamp        `json:"timeStamp,omitempty"`
	Links            NotificationLinks `json:"_links"`
	ExpiryDeadline   TimeStamp         `json:"expiryDeadline"`
	Drift            Notice            `json:"drift"`
}

// TestNotificationBody answers requestTestNotification.
type TestNotificationBody struct {
	NotificationType string            `json:"notificationType"`
	Links            NotificationLinks `json:"_links"`
	Drift            Notice            `json:"drift"`
}

// AdjacentAppInstanceInfo answers GET /queries/adjacent_app_instances: one
// ready pre-deployed instance of a session.
type AdjacentAppInstanceInfo struct {
	AppDID              string                   `json:"appDId"`
	AppInstanceCommLink []CommunicationInterface `json:"appInstanceCommLink"`
	AppInstanceID       string                   `json:"appInstanceId"`
	MECHostInformation  *MECHostInformation      `json:"mecHostInformation,omitempty"`
}

// MECHostInformation names the cloud an instance runs on.
type MECHostInformation struct {
	HostName string            `json:"hostName,omitempty"`
	HostID   map[string]string `json:"hostId"`
}

// FieldError is one bad field of a request: a dotted JSON path (or a path
// or query parameter's name) and why.
type FieldError struct {
	Param  string `json:"param"`
	Reason string `json:"reason"`
}
