package mecapi

import (
	"fmt"
	"strings"

	"github.com/edgedrift/drift/internal/amsi"
	"github.com/edgedrift/drift/internal/appspec"
	"github.com/edgedrift/drift/internal/runtime"
)

// parseApp builds the AppSpec from either form, naming the fields at fault.
func parseApp(in amsi.AppRequest) (appspec.AppSpec, []amsi.FieldError) {
	var bad []amsi.FieldError
	add := func(param, format string, args ...any) {
		bad = append(bad, amsi.FieldError{Param: "drift." + param, Reason: fmt.Sprintf(format, args...)})
	}
	var spec appspec.AppSpec
	switch {
	case in.Compose != "":
		if in.Name != "" || in.Image != "" || in.Port != 0 {
			add("app", "give either compose (with service) or name, image and port, not both")
			return spec, bad
		}
		s, err := appspec.FromCompose([]byte(in.Compose), in.Service)
		if err != nil {
			add("app.compose", "%v", err)
			return spec, bad
		}
		spec = s
	case in.Service != "":
		add("app.service", "only with app.compose")
		return spec, bad
	default:
		if in.Name == "" {
			add("app.name", "required (or give app.compose)")
		} else if err := runtime.ValidateName(in.Name); err != nil {
			add("app.name", "%q must be a DNS-1035 label (a-z, 0-9, '-', start with a letter, at most 63 characters)", in.Name)
		}
		if strings.TrimSpace(in.Image) == "" {
			add("app.image", "required: a full reference with registry and tag or digest, e.g. 127.0.0.1:5000/hello:v1")
		}
		if in.Port == 0 {
			in.Port = DefaultPort
		}
		if in.Port < 1 || in.Port > 65535 {
			add("app.port", "%d is not in 1..65535", in.Port)
		}
		if len(bad) > 0 {
			return spec, bad
		}
		spec = appspec.AppSpec{Name: in.Name, Image: in.Image, Port: in.Port}
	}
	if in.Health != "" {
		spec.Health = in.Health
	}
	if err := spec.Validate(); err != nil {
		msg := err.Error()
		param := "app"
		switch {
		case strings.Contains(msg, "health path"):
			param = "app.health"
		case in.Compose != "":
			param = "app.compose"
		case strings.Contains(msg, "image"):
			param = "app.image"
		}
		add(param, "%s", msg)
	}
	return spec, bad
}
