package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/runtime"
)

// Install is a component's prod env as an operator's earlier install made
// it, before any upgrade.
type Install struct {
	Component string // e.g. cinder; its env is <component>-prod
	Repo      string // the component's repository; tags are releases
	Version   string
	Driver    string // a driver build layered in, which adds the volume service; "" = the API only
	Data      bool   // both services mount the volume <component>-data
}

// Env is the name of a component's env as Install makes it.
func Env(component string) string { return component + "-prod" }

// DataVolume is the name of a component's data volume.
func DataVolume(component string) string { return component + "-data" }

// InstallComponent deploys in straight through the runtime (pinned by
// digest, so a changed image shows in the instance) and puts the
// component's stable endpoint in front of its API.
func InstallComponent(ctx context.Context, rt runtime.Runtime, router runtime.Router, in Install) (runtime.Route, error) {
	img, err := image.Resolve(ctx, in.Repo+":"+in.Version)
	if in.Driver != "" {
		img, err = image.Layer(ctx, in.Repo+":"+in.Version, in.Driver, in.Repo+"-drivers:"+in.Version+"-installed")
	}
	if err != nil {
		return runtime.Route{}, err
	}
	services := map[string]string{in.Component: "api"}
	if in.Driver != "" {
		services[in.Component+"-volume"] = "volume"
	}
	owner := map[string]string{activities.LabelComponent: in.Component}
	for _, service := range slices.Sorted(maps.Keys(services)) {
		spec := runtime.Spec{Image: img, Port: CinderPort, Health: CinderHealth, Env: map[string]string{"ROLE": services[service]},
			Labels: map[string]string{activities.LabelComponent: in.Component, activities.LabelEnv: Env(in.Component),
				activities.LabelVersion: in.Version, activities.LabelService: service}}
		if in.Data {
			spec.Volumes = []runtime.Volume{{Name: DataVolume(in.Component), Path: CinderData, Labels: owner}}
		}
		if _, err := rt.Deploy(ctx, service+"-prod", spec); err != nil {
			return runtime.Route{}, err
		}
	}
	return router.Route(ctx, in.Component, in.Component+"-prod", owner)
}

// RemoveComponent takes everything of a component off a cloud: instances,
// stable endpoint, data volume. It fails when anything of it is left.
func RemoveComponent(ctx context.Context, rt runtime.Runtime, router runtime.Router, component string) error {
	sel := map[string]string{activities.LabelComponent: component}
	var errs []error
	found, err := rt.List(ctx, sel)
	errs = append(errs, err)
	for _, in := range found {
		errs = append(errs, rt.Destroy(ctx, in.Name))
	}
	routes, err := router.Routes(ctx, sel)
	errs = append(errs, err)
	for _, r := range routes {
		errs = append(errs, router.Unroute(ctx, r.Name))
	}
	st, ok := rt.(runtime.Stateful)
	var vols []runtime.Volume
	if ok {
		vols, err = st.Volumes(ctx, sel)
		errs = append(errs, err)
		for _, v := range vols {
			errs = append(errs, st.RemoveVolume(ctx, v.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove %s: %w", component, err)
	}
	found, _ = rt.List(ctx, sel)
	routes, _ = router.Routes(ctx, sel)
	if ok {
		vols, _ = st.Volumes(ctx, sel)
	}
	if len(found)+len(routes)+len(vols) > 0 {
		return fmt.Errorf("%s left: instances %v, endpoints %v, volumes %v", component, found, routes, vols)
	}
	return nil
}

// Volume is one volume of the example component and the data written to it.
type Volume struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Data string `json:"data,omitempty"`
}

// Consumer uses the example component at its stable endpoint.
type Consumer struct {
	URL    string
	Client *http.Client
}

// Do makes one request and wants a 2xx answer.
func (c Consumer) Do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, err
}

// Create makes a volume holding data and returns it with its id.
func (c Consumer) Create(ctx context.Context, name, data string) (Volume, error) {
	b, err := c.Do(ctx, http.MethodPost, CinderVolumes, map[string]string{"name": name, "data": data})
	if err != nil {
		return Volume{}, err
	}
	v := Volume{Name: name, Data: data}
	var got struct{ ID string }
	if err := json.Unmarshal(b, &got); err != nil || got.ID == "" {
		return v, fmt.Errorf("create %s: %q %v", name, b, err)
	}
	v.ID = got.ID
	return v, nil
}

// Missing lists the volumes of want that are not listed under their name
// or whose data does not read back unchanged, each with why.
func (c Consumer) Missing(ctx context.Context, want []Volume) ([]string, error) {
	b, err := c.Do(ctx, http.MethodGet, CinderVolumes, nil)
	if err != nil {
		return nil, err
	}
	var listed []Volume
	if err := json.Unmarshal(b, &listed); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	names := map[string]string{}
	for _, v := range listed {
		names[v.ID] = v.Name
	}
	var bad []string
	for _, v := range want {
		data, err := c.Do(ctx, http.MethodGet, CinderVolumes+"/"+v.ID+"/data", nil)
		if names[v.ID] != v.Name || err != nil || string(data) != v.Data {
			bad = append(bad, fmt.Sprintf("volume %s (%s): listed as %q, data %q, %v", v.ID, v.Name, names[v.ID], data, err))
		}
	}
	return bad, nil
}
