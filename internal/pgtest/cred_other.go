//go:build !unix

package pgtest

import (
	"errors"
	"os/exec"
)

type credential struct{ uid, gid int }

func unprivileged() (*credential, error) {
	return nil, errors.New("running PostgreSQL as another user is supported on unix only")
}

func runAs(*exec.Cmd, *credential) {}
