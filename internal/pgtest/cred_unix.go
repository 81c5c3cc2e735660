//go:build unix

package pgtest

import (
	"errors"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// credential is the unprivileged user that runs PostgreSQL when the tests
// run as root (PostgreSQL refuses to run as root).
type credential struct{ uid, gid int }

func unprivileged() (*credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &credential{uid, gid}, nil
	}
	return nil, errors.New("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL")
}

func runAs(cmd *exec.Cmd, c *credential) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}}
}
