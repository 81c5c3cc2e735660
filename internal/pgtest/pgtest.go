// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb in
// a temporary directory, a server on a free loopback port run by an
// unprivileged user, and a fresh database per test. It uses Debian's
// postgresql package (or any initdb/pg_ctl on PATH).
//
// When the binaries are missing, tests skip with a message that says how to
// install them; with MODELSLOT_REQUIRE_POSTGRES=1 (set by CI) they fail
// instead, so that a CI run never passes with the PostgreSQL tests skipped.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv, when "1", turns a missing PostgreSQL into a test failure.
const RequireEnv = "MODELSLOT_REQUIRE_POSTGRES"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir  string // data directory
	Port int
	User string // the database superuser's name
	bin  string
	cred *credential
	dbs  atomic.Int64
}

var (
	once    sync.Once
	shared  *Cluster
	fault   error
	missing bool
)

// Main runs a package's tests and stops the shared cluster afterwards:
// call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// BinDir finds the directory holding initdb, pg_ctl and postgres.
func BinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL's initdb and pg_ctl were not found on PATH nor in /usr/lib/postgresql/*/bin: install them with `apt-get install postgresql`")
}

// Shared returns the package's cluster, starting it on first use; it skips
// the test (or fails it, under MODELSLOT_REQUIRE_POSTGRES=1) when
// PostgreSQL is not installed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() {
		bin, err := BinDir()
		if err != nil {
			missing, fault = true, err
			return
		}
		shared, fault = Start(bin)
	})
	if missing {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1 requires the PostgreSQL tests to run)", fault, RequireEnv)
		}
		t.Skipf("skipping: %v", fault)
	}
	if fault != nil {
		t.Fatalf("start PostgreSQL: %v", fault)
	}
	return shared
}

// DSN makes a fresh database on the shared cluster for this test and
// returns its connection string.
func DSN(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), c.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to the test cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return c.URL(name)
}

// URL is the connection string of database db.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.User, c.Port, db)
}

// Start runs initdb and starts a server with the binaries in bin. As root
// it runs them as the "postgres" user (or "nobody"), since PostgreSQL
// refuses to run as root.
func Start(bin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "modelslot-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin, User: "modelslot"}
	if os.Geteuid() == 0 {
		cred, err := unprivileged()
		if err != nil {
			return nil, err
		}
		c.cred = cred
		if err := os.Chown(dir, cred.uid, cred.gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", c.User, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.Port = port
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
	if out, err := c.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return c, nil
}

// Stop stops the server (fast shutdown) and removes its directory.
func (c *Cluster) Stop() {
	c.PgCtl("stop", "-m", "immediate")
	os.RemoveAll(c.Dir)
}

// PgCtl runs pg_ctl on the cluster's data directory with the given
// arguments ("stop", "-m", "fast" or "start"), for failure tests.
func (c *Cluster) PgCtl(args ...string) error {
	full := append([]string{"-D", filepath.Join(c.Dir, "data")}, args...)
	if len(args) > 0 && args[0] == "start" {
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", c.Port, c.Dir)
		full = append(full, "-o", opts, "-l", filepath.Join(c.Dir, "log"), "-w", "-t", "60")
	}
	if len(args) > 0 && args[0] == "stop" {
		full = append(full, "-w", "-t", "60")
	}
	out, err := c.run("pg_ctl", full...)
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %v: %s", args, err, out)
	}
	return nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		runAs(cmd, c.cred)
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
