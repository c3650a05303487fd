package harness

import (
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Percentile is the nearest-rank p-th percentile of ds (p in (0, 1]; 0.5
// is the median): the smallest value with at least p of ds at or below
// it. It is 0 for no values.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// LoadAvg is the machine's 1, 5 and 15 minute load averages as
// /proc/loadavg gives them ("0.52 0.58 0.59"), or "?": benchmarks print it
// because the machine is shared and figures move with its load.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
