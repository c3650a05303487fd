package mecapi

import (
	"fmt"
	"net/http"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/workflows"
)

// adjacent answers GET /queries/adjacent_app_instances: the ready
// pre-deployed instances (on neighbour clouds) of the session named by
// ?appMobilityServiceId=.
func (a *API) adjacent(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if p := unsupportedQuery(q, "appMobilityServiceId"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	id := q.Get("appMobilityServiceId")
	if id == "" {
		writeProblem(w, r, invalid([]amsi.FieldError{{Param: "appMobilityServiceId", Reason: "required: the registration whose adjacent instances to list"}}))
		return
	}
	user, app, err := amsi.ParseRegistrationID(id)
	if err != nil {
		writeProblem(w, r, invalid([]amsi.FieldError{{Param: "appMobilityServiceId", Reason: err.Error()}}))
		return
	}
	st, ended, ok := a.record(w, r, user, app)
	if !ok {
		return
	}
	if ended {
		writeProblem(w, r, problem(http.StatusNotFound, typeNotFound, fmt.Sprintf("%s has ended", names.SessionID(user, app))))
		return
	}
	out := []amsi.AdjacentAppInstanceInfo{}
	for _, in := range st.Instances {
		if in.Role != workflows.RoleWarm || in.Status != workflows.StatusReady {
			continue
		}
		out = append(out, amsi.AdjacentAppInstanceInfo{
			AppDID:              app,
			AppInstanceID:       in.Name,
			AppInstanceCommLink: []amsi.CommunicationInterface{{IPAddresses: []amsi.IPAddress{{Host: in.Endpoint.Host, Port: in.Endpoint.Port}}}},
			MECHostInformation:  &amsi.MECHostInformation{HostName: in.Cloud, HostID: map[string]string{"cloud": in.Cloud}},
		})
	}
	writeJSON(w, http.StatusOK, out)
}
