package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/edgedrift/drift/tests/internal/proc"
)

func TestMain(m *testing.M) { os.Exit(RunShared(m)) }

// Shared starts one cluster for the package on first use; RunShared stops it.
func TestSharedCluster(t *testing.T) {
	var first *Cluster
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			c := Shared(t, WithNodes(2), WithNodeResources("8", "16Gi", "20"))
			if first == nil {
				first = c
			} else if c != first {
				t.Fatal("Shared started a second cluster")
			}
			if len(c.Nodes) != 2 {
				t.Fatalf("nodes %v, want 2", c.Nodes)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.WaitNodesReady(ctx); err != nil {
				t.Fatal(err)
			}
			n, err := c.Clientset.CoreV1().Nodes().Get(ctx, c.Nodes[1], metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Status.Allocatable.Cpu().String(); got != "8" {
				t.Errorf("allocatable cpu %s, want 8", got)
			}
		})
	}
}

// A start that fails half-way stops what it started and says why.
func TestFailedStartLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, err := New(context.Background(), WithDir(dir), WithStartTimeout(300*time.Millisecond))
	if err == nil {
		c.Stop()
		t.Skip("the cluster came up within 300ms; nothing to test")
	}
	t.Logf("error, as wanted: %.300s", err)
	if !strings.Contains(err.Error(), "==> etcd") {
		t.Errorf("the error lacks the component logs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd.log")); err != nil {
		t.Errorf("no etcd log: %v", err)
	}
	if pids, err := proc.In(dir); err != nil || len(pids) != 0 {
		t.Errorf("processes still running in %s: %v (%v)", dir, pids, err)
	}
}
