package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/internal/runtime"
)

// The steps of an upgrade with data: one-shot tasks of the component's own
// tools on its volume, a sample of its data read before and after, envs
// kept stopped for a rollback, and its stable endpoint.

// TaskRequest runs one of a component's tools as a one-shot task.
type TaskRequest struct {
	Name string       `json:"name"`
	Spec runtime.Spec `json:"spec"`
}

// RunTask runs the task and returns how it ended: a non-zero exit is a
// result for the workflow to judge, not an error.
func (u *Upgrade) RunTask(ctx context.Context, req TaskRequest) (runtime.TaskResult, error) {
	st, err := u.stateful()
	if err != nil {
		return runtime.TaskResult{}, err
	}
	stop := heartbeat(ctx)
	defer stop()
	for _, svc := range req.Spec.Project() {
		if err := checkTrust(ctx, u.Trust, u.Cloud, svc.Image); err != nil {
			return runtime.TaskResult{}, err
		}
	}
	res, err := st.Run(ctx, req.Name, req.Spec)
	return res, classify(err)
}

// KeepEnv stops every instance matching selector and keeps it; it returns
// how many it stopped.
func (u *Upgrade) KeepEnv(ctx context.Context, selector map[string]string) (int, error) {
	st, err := u.stateful()
	if err != nil {
		return 0, err
	}
	found, err := u.Runtime.List(ctx, selector)
	if err != nil {
		return 0, classify(err)
	}
	for _, in := range found {
		if err := st.Stop(ctx, in.Name); err != nil {
			return 0, classify(err)
		}
	}
	return len(found), nil
}

// RestoreEnv starts every kept instance matching selector again and returns
// their endpoints by name once all are ready.
func (u *Upgrade) RestoreEnv(ctx context.Context, selector map[string]string) (map[string]runtime.Endpoint, error) {
	st, err := u.stateful()
	if err != nil {
		return nil, err
	}
	stop := heartbeat(ctx)
	defer stop()
	found, err := u.Runtime.List(ctx, selector)
	if err != nil {
		return nil, classify(err)
	}
	out := map[string]runtime.Endpoint{}
	for _, in := range found {
		if out[in.Name], err = st.Start(ctx, in.Name); err != nil {
			return nil, classify(err)
		}
	}
	return out, nil
}

func (u *Upgrade) stateful() (runtime.Stateful, error) {
	st, ok := u.Runtime.(runtime.Stateful)
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the %s runtime keeps no volumes, tasks or stopped instances", u.Runtime.Kind()), ErrTypeInvalidSpec, nil)
	}
	return st, nil
}

// RouteRequest points a stable endpoint at an instance.
type RouteRequest struct {
	Name     string            `json:"name"`
	Instance string            `json:"instance"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// RouteEndpoint creates the endpoint or switches it to the instance.
func (u *Upgrade) RouteEndpoint(ctx context.Context, req RouteRequest) (runtime.Route, error) {
	r, err := u.Router.Route(ctx, req.Name, req.Instance, req.Labels)
	return r, classify(err)
}

// DataSample is what a component's data held at one moment: how many
// volumes it listed and the digests of some of them.
type DataSample struct {
	List    string         `json:"list"`  // the GET path that lists volumes
	Count   int            `json:"count"` // volumes listed
	Volumes []VolumeDigest `json:"volumes"`
}

// VolumeDigest is one volume and the sha256 of its data.
type VolumeDigest struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

// SampleRequest asks for a sample of n volumes through an endpoint.
type SampleRequest struct {
	Endpoint runtime.Endpoint `json:"endpoint"`
	List     string           `json:"list"`
	N        int              `json:"n"`
}

// SampleData lists the volumes through the endpoint and reads n of them,
// spread evenly over their ids in order, keeping each one's digest.
func (u *Upgrade) SampleData(ctx context.Context, req SampleRequest) (DataSample, error) {
	ids, err := u.listVolumes(ctx, req.Endpoint, req.List)
	if err != nil {
		return DataSample{}, err
	}
	s := DataSample{List: req.List, Count: len(ids), Volumes: []VolumeDigest{}}
	if req.N <= 0 || len(ids) == 0 {
		return s, nil
	}
	step := max(1, len(ids)/req.N)
	for i := 0; i < len(ids) && len(s.Volumes) < req.N; i += step {
		sum, err := u.digest(ctx, req.Endpoint, req.List, ids[i])
		if err != nil {
			return DataSample{}, err
		}
		s.Volumes = append(s.Volumes, VolumeDigest{ID: ids[i], SHA256: sum})
	}
	return s, nil
}

// checkSample wants every sampled volume listed and its data unchanged.
func (u *Upgrade) checkSample(ctx context.Context, ep runtime.Endpoint, s DataSample) (string, error) {
	ids, err := u.listVolumes(ctx, ep, s.List)
	if err != nil {
		return "", err
	}
	for _, v := range s.Volumes {
		if _, found := slices.BinarySearch(ids, v.ID); !found {
			return "", fmt.Errorf("volume %s is not listed (%d volumes listed, %d before)", v.ID, len(ids), s.Count)
		}
		sum, err := u.digest(ctx, ep, s.List, v.ID)
		if err != nil {
			return "", err
		}
		if sum != v.SHA256 {
			return "", fmt.Errorf("volume %s reads back other data (sha256 %s, was %s)", v.ID, sum[:12], v.SHA256[:12])
		}
	}
	return fmt.Sprintf("%d volumes listed (%d before); %d sampled read back unchanged", len(ids), s.Count, len(s.Volumes)), nil
}

// listVolumes returns the ids the list path answers, sorted.
func (u *Upgrade) listVolumes(ctx context.Context, ep runtime.Endpoint, list string) ([]string, error) {
	b, err := u.fetch(ctx, http.MethodGet, strings.TrimRight(ep.URL, "/")+list, 64<<20)
	if err != nil {
		return nil, err
	}
	var vols []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &vols); err != nil {
		return nil, fmt.Errorf("list volumes at %s%s: %w", ep.URL, list, err)
	}
	ids := make([]string, 0, len(vols))
	for _, v := range vols {
		ids = append(ids, v.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

func (u *Upgrade) digest(ctx context.Context, ep runtime.Endpoint, list, id string) (string, error) {
	b, err := u.fetch(ctx, http.MethodGet, strings.TrimRight(ep.URL, "/")+list+"/"+url.PathEscape(id)+"/data", 1<<30)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
