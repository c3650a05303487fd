//go:build tools

// Package tools pins the Kubernetes programs that tests/kube/build.sh builds: the control plane,
// and the kubelet of the harness's real node. The build tag keeps this file out of every build;
// `go mod tidy` still reads its imports, so go.mod and go.sum keep exactly what the commands need.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
