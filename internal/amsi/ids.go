package amsi

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/runtime"
)

// RegistrationID is the appMobilityServiceId of user's session of app:
// "<app>.<user>". An app is a DNS label (no '.'), so the first '.' splits
// it; the same session always has the same id, on every API replica.
func RegistrationID(user, app string) string { return app + "." + user }

// ParseRegistrationID splits an appMobilityServiceId and checks both
// names.
func ParseRegistrationID(id string) (user, app string, err error) {
	app, user, ok := strings.Cut(id, ".")
	if !ok {
		return "", "", fmt.Errorf("%q is not an appMobilityServiceId: they read <app>.<user>", id)
	}
	if err := runtime.ValidateName(app); err != nil {
		return "", "", fmt.Errorf("%q: app %q is not a DNS-1035 label", id, app)
	}
	if err := names.CheckUser(user); err != nil {
		return "", "", fmt.Errorf("%q: %v", id, err)
	}
	return user, app, nil
}

// Paths of the resources (below the server's address).
const (
	RegistrationsPath = BasePath + "/app_mobility_services"
	SubscriptionsPath = BasePath + "/subscriptions"
	AdjacentPath      = BasePath + "/queries/adjacent_app_instances"
)

// RegistrationHref is the path of a registration.
func RegistrationHref(id string) string { return RegistrationsPath + "/" + url.PathEscape(id) }

// MovesHref is the path of a registration's moves.
func MovesHref(id string) string { return RegistrationHref(id) + "/moves" }

// MoveHref is the path of one move.
func MoveHref(id, move string) string { return MovesHref(id) + "/" + url.PathEscape(move) }

// SubscriptionHref is the path of a subscription.
func SubscriptionHref(id string) string { return SubscriptionsPath + "/" + url.PathEscape(id) }
