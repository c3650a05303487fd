package temporalpg

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// ServerVersion is the Temporal server this harness runs. It must match the
// go.temporal.io/server requirement in ../tools/go.mod (a test checks it), as
// build.sh reads the version from there.
const ServerVersion = "v1.32.1"

// EnvBin names a directory holding temporal-server and temporal-sql-tool
// instead of the cache dir; build.sh builds into it when it is incomplete.
const EnvBin = "DRIFT_TEMPORAL_BIN"

// ErrUnavailable marks errors that mean the harness cannot run on this
// machine (binaries missing and not buildable, PostgreSQL not installed), as
// opposed to a server that was started and misbehaved.
var ErrUnavailable = errors.New("temporal-on-postgres test harness unavailable")

// Binaries are the paths of everything the harness runs.
type Binaries struct {
	Server, SQLTool string // temporal-server, temporal-sql-tool
	PGBin           string // dir of PostgreSQL's initdb, postgres, pg_isready, psql
}

// BinDir is where build.sh puts the binaries: $DRIFT_TEMPORAL_BIN, else
// ${DRIFT_CACHE:-$HOME/.cache/drift}/temporal-<ServerVersion>/bin.
func BinDir() string {
	if d := os.Getenv(EnvBin); d != "" {
		return d
	}
	return filepath.Join(proc.CacheRoot(), "temporal-"+ServerVersion, "bin")
}

// BuildScript is the path of tests/production/build.sh in this source tree.
func BuildScript() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "build.sh")
}

// FindBinaries locates the server binaries, running build.sh when they are
// missing (about 6 minutes when cold), and Debian's PostgreSQL. Errors that
// mean the harness cannot run here wrap ErrUnavailable.
func FindBinaries(logf func(format string, args ...any)) (Binaries, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir := BinDir()
	missing := func(dir string) []string {
		var m []string
		for _, b := range []string{"temporal-server", "temporal-sql-tool"} {
			if !proc.IsExecutable(filepath.Join(dir, b)) {
				m = append(m, b)
			}
		}
		return append(m, proc.StampsDiffer(dir, map[string]string{".temporal-version": ServerVersion})...)
	}
	if err := proc.Build(BuildScript(), EnvBin, dir, missing, func(format string, args ...any) { logf("temporalpg: "+format, args...) }); err != nil {
		return Binaries{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	pg, err := postgresBinDir()
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Server: filepath.Join(dir, "temporal-server"), SQLTool: filepath.Join(dir, "temporal-sql-tool"), PGBin: pg}, nil
}

// postgresBinDir is the newest /usr/lib/postgresql/<major>/bin with the
// programs the harness runs (Debian's layout; 15 on Debian 12).
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		ok := true
		for _, b := range []string{"initdb", "postgres", "pg_isready", "psql"} {
			ok = ok && proc.IsExecutable(filepath.Join(d, b))
		}
		if ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no PostgreSQL server under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)", ErrUnavailable)
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// pgUser is the account PostgreSQL runs as: it refuses to run as root, so a
// root test runs it as Debian's "postgres" user; anyone else runs it as
// themselves (nil).
func pgUser() (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root needs the postgres user to run PostgreSQL as (apt-get install -y postgresql): %v", ErrUnavailable, err)
	}
	return u, nil
}
