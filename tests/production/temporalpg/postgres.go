package temporalpg

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgedrift/drift/tests/internal/proc"
)

// Postgres is a PostgreSQL server of the test's own: data dir and unix
// socket dir under the cluster's dir, listening on Host:Port, with one role
// (User, Password; password auth over TCP) that may create databases. The
// bootstrap superuser "postgres" is reachable only through the socket.
type Postgres struct {
	Host      string // 127.0.0.1
	Port      int
	User      string
	Password  string
	DataDir   string
	SocketDir string

	bin     string              // PostgreSQL's bin dir
	cred    *syscall.Credential // whom PostgreSQL runs as (nil: the test's user)
	dir     string              // holds DataDir, its HOME and its log
	ownSock bool                // SocketDir is a short temp dir of its own, removed by Stop

	mu sync.Mutex
	p  *proc.Proc // nil when stopped
}

// Addr is Host:Port.
func (pg *Postgres) Addr() string { return pg.Host + ":" + strconv.Itoa(pg.Port) }

// LogPath is the server's log, appended across restarts.
func (pg *Postgres) LogPath() string { return filepath.Join(pg.dir, "postgres.log") }

// initPostgres makes a new data dir in dir/pg for a server on port.
func initPostgres(ctx context.Context, dir string, port int, bins Binaries) (*Postgres, error) {
	u, err := pgUser()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Host: "127.0.0.1", Port: port, User: "temporal", Password: rand.Text(), bin: bins.PGBin, dir: filepath.Join(dir, "pg")}
	pg.DataDir = filepath.Join(pg.dir, "data")
	pg.SocketDir = filepath.Join(pg.dir, "run")
	// A unix socket path has at most 107 bytes; a deep test dir gets a short one.
	if len(pg.SocketDir)+len("/.s.PGSQL.65535.lock") > 100 {
		if pg.SocketDir, err = os.MkdirTemp("", "drift-pg-"); err != nil {
			return nil, err
		}
		pg.ownSock = true
	}
	for _, d := range []string{pg.dir, pg.SocketDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if u != nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		for _, d := range []string{pg.dir, pg.SocketDir} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
		if err := letUserReach(u, pg.dir); err != nil {
			return nil, err
		}
	}
	// Trust on the socket (for the role setup below), passwords over TCP.
	if err := pg.run(ctx, pg.cred, "", "initdb", "-D", pg.DataDir, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	return pg, nil
}

// letUserReach makes every dir above target that the test made under the
// temp dir searchable by others (t.TempDir's are 0700), so that u can reach
// target. Dirs outside the temp dir are left alone: there the caller must
// choose a dir u can reach.
func letUserReach(u *user.User, target string) error {
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(target); strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// Start starts the server on its data dir and waits until it accepts
// connections. The first start also creates the role User.
func (pg *Postgres) Start(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.p != nil {
		if done, _ := pg.p.Exited(); !done {
			return fmt.Errorf("postgres already running (pid %d)", pg.p.Pid())
		}
	}
	cmd := exec.Command(filepath.Join(pg.bin, "postgres"), "-D", pg.DataDir,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(pg.Port),
		"-c", "unix_socket_directories="+pg.SocketDir,
		// Four Temporal services each keep a pool per store.
		"-c", "max_connections=200")
	cmd.Dir = pg.dir
	cmd.Env = proc.Env(pg.dir, nil, "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	p, err := proc.StartCmd(pg.LogPath(), "postgres", cmd)
	if err != nil {
		return err
	}
	pg.p = p
	for {
		// pg_isready exits 0 once the server accepts connections.
		err := proc.Run(exec.CommandContext(ctx, filepath.Join(pg.bin, "pg_isready"), "-q", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-t", "1"), "")
		if err == nil {
			break
		}
		if done, werr := p.Exited(); done {
			return fmt.Errorf("postgres exited (%v) before accepting connections", werr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections on %s: %w", pg.Addr(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Idempotent, so a restart finds the role in place.
	sql := fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN
    CREATE ROLE %[1]s LOGIN CREATEDB PASSWORD '%[2]s';
  END IF;
END $$;`, pg.User, pg.Password)
	// On stdin: the password stays off command lines and out of the log.
	return pg.run(ctx, nil, sql, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.SocketDir, "-p", strconv.Itoa(pg.Port), "-U", "postgres", "-d", "postgres")
}

// Stop shuts the server down fast (SIGINT: clients are disconnected, no
// waiting for them) and waits until it has exited. Stopping a stopped server
// does nothing.
func (pg *Postgres) Stop() error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.p == nil {
		return nil
	}
	err := pg.p.StopWith(syscall.SIGINT)
	pg.p = nil
	return err
}

// Running reports whether the server process is alive.
func (pg *Postgres) Running() bool {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.p == nil {
		return false
	}
	done, _ := pg.p.Exited()
	return !done
}

// run runs one of PostgreSQL's programs to completion, as cred, with stdin,
// logging to pg.dir/<name>.log.
func (pg *Postgres) run(ctx context.Context, cred *syscall.Credential, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, name), args...)
	cmd.Dir = pg.dir
	cmd.Env = proc.Env(pg.dir, []string{"PGPASSWORD", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"}, "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stdin = strings.NewReader(stdin)
	return proc.Run(cmd, filepath.Join(pg.dir, name+".log"))
}

// cleanup removes the socket dir made outside the cluster's dir.
func (pg *Postgres) cleanup() error {
	if pg.ownSock {
		return os.RemoveAll(pg.SocketDir)
	}
	return nil
}
