package workerhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/names"
)

// What an operator reads of a worker besides the SDK's metrics: a log line
// per activity, per-queue schedule-to-start latency and pollers, readiness.

// queueMetrics are drift's own per-queue series.
type queueMetrics struct {
	scheduleToStart *prometheus.HistogramVec // seconds from an attempt's schedule to its start, by queue
	pollers         *prometheus.GaugeVec     // pollers the server knows on each queue this worker polls
}

func newQueueMetrics(reg prometheus.Registerer) queueMetrics {
	m := queueMetrics{
		scheduleToStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drift_worker_queue_schedule_to_start_seconds",
			Help:    "Time activities taken by this worker waited on their task queue for a worker.",
			Buckets: []float64{.005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300},
		}, []string{"queue", "cloud"}),
		pollers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drift_worker_queue_pollers",
			Help: "Pollers the Temporal server sees on each task queue this worker polls (all workers, not only this one).",
		}, []string{"queue", "cloud"}),
	}
	reg.MustRegister(m.scheduleToStart, m.pollers)
	return m
}

// cloudOf names the cloud a queue acts on, "central" for drift's own queue
// and the queue itself for any other.
func cloudOf(queue string) string {
	switch {
	case queue == names.TaskQueue:
		return "central"
	case strings.HasPrefix(queue, names.CloudQueue("")):
		return strings.TrimPrefix(queue, names.CloudQueue(""))
	}
	return queue
}

// activityLog logs each activity's start and end at info (workflow, activity,
// cloud, attempt, duration) and observes its schedule-to-start latency.
type activityLog struct {
	interceptor.WorkerInterceptorBase
	logger  *slog.Logger
	metrics *Metrics // nil: no metrics
}

func (a *activityLog) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &activityLogInbound{log: a}
	i.Next = next
	return i
}

type activityLogInbound struct {
	interceptor.ActivityInboundInterceptorBase
	log *activityLog
}

func (i *activityLogInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	cloud := cloudOf(info.TaskQueue)
	waited := info.StartedTime.Sub(info.ScheduledTime)
	if m := i.log.metrics; m != nil && waited >= 0 {
		m.queues.scheduleToStart.WithLabelValues(info.TaskQueue, cloud).Observe(waited.Seconds())
	}
	attrs := []any{"workflow_id", info.WorkflowExecution.ID, "activity", info.ActivityType.Name, "cloud", cloud,
		"queue", info.TaskQueue, "attempt", info.Attempt}
	i.log.logger.Info("activity started", append(attrs, "waited", waited.Round(time.Millisecond).String())...)
	began := time.Now()
	res, err := i.Next.ExecuteActivity(ctx, in)
	took := time.Since(began).Round(time.Millisecond)
	switch {
	case errors.Is(err, activity.ErrResultPending):
		i.log.logger.Info("activity pending", append(attrs, "duration", took.String())...)
	case err != nil:
		i.log.logger.Warn("activity failed", append(attrs, "duration", took.String(), "err", err)...)
	default:
		i.log.logger.Info("activity done", append(attrs, "duration", took.String())...)
	}
	return res, err
}

// watchPollers keeps the pollers gauge of queues current until ctx ends.
func (m *Metrics) watchPollers(ctx context.Context, c client.Client, queues map[string]enums.TaskQueueType, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for q, typ := range queues {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := c.DescribeTaskQueue(dctx, q, typ)
			cancel()
			if err == nil {
				m.queues.pollers.WithLabelValues(q, cloudOf(q)).Set(float64(len(resp.GetPollers())))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readiness is what /readyz checks: Temporal answers, the namespace is set
// up for drift, and the registry answers (any HTTP answer below 500: it may
// ask for credentials).
func readiness(t config.Temporal, c client.Client, registry string) func(context.Context) error {
	httpc := &http.Client{Timeout: 3 * time.Second, Transport: image.Transport()} // HTTPS for a registry given --registry-ca
	return func(ctx context.Context) error {
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return fmt.Errorf("Temporal at %s does not answer: %w", t.Address, err)
		}
		if err := t.CheckSetup(ctx, c); err != nil {
			return err
		}
		if registry == "" {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, registryURL(registry)+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return fmt.Errorf("registry %s does not answer: %w", registry, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("registry %s answers %s", registry, resp.Status)
		}
		return nil
	}
}

// registryURL is the base URL of a registry given as host:port (plain HTTP)
// or as a URL.
func registryURL(registry string) string {
	if strings.Contains(registry, "://") {
		return strings.TrimSuffix(registry, "/")
	}
	return "http://" + registry
}

// defaultIdentity is how a worker shows in the Web UI and in pollers:
// what it polls (central, clouds), then the host.
func defaultIdentity(central bool, clouds []string, node string) string {
	var parts []string
	if central {
		parts = append(parts, "central")
	}
	parts = append(parts, clouds...)
	if node != "" {
		parts = append(parts, "node-"+node)
	}
	host, _ := os.Hostname()
	return strings.Join(parts, "+") + "@" + host
}
