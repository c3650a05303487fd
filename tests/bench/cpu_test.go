package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// The machine is shared: other processes may run during a measurement.
// cpuSample reads how busy the machine and this process were, so the report
// can say how much CPU others took while each section ran.
type cpuSample struct {
	at          time.Time
	total, idle uint64 // all CPUs, in clock ticks (/proc/stat)
	self        uint64 // this process and its waited-for children (/proc/self/stat)
}

func readCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i >= 8 { // guest time is already counted in user
				break
			}
			s.total += n
			if i == 3 || i == 4 { // idle, iowait
				s.idle += n
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			// utime, stime, cutime, cstime are fields 14-17 (1-based),
			// i.e. 11-14 after "pid (comm)".
			for _, v := range f[11:15] {
				n, _ := strconv.ParseUint(v, 10, 64)
				s.self += n
			}
		}
	}
	return s
}

// cpuUse is how many cores were busy over an interval, in all and by this
// process (the bench: worker, in-process server, the server process it
// started). The rest ran in other processes: for the handover section that
// includes the Docker daemon and the app's own instances, which the bench
// caused; anything beyond is other work on the machine.
type cpuUse struct {
	Busy, Self float64 // in cores
	Cores      int
}

func (a cpuSample) until(b cpuSample, cores int) cpuUse {
	dt := float64(b.total - a.total)
	if dt <= 0 {
		return cpuUse{Cores: cores}
	}
	perCore := dt / float64(cores) // ticks of one core over the interval
	return cpuUse{
		Busy:  float64((b.total-b.idle)-(a.total-a.idle)) / perCore,
		Self:  float64(b.self-a.self) / perCore,
		Cores: cores,
	}
}

// Others is the cores used by processes other than this one.
func (u cpuUse) Others() float64 { return max(0, u.Busy-u.Self) }
