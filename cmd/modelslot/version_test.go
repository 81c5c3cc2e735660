package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/modelslot/modelslot", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "c16334a0f1"},
			{Key: "vcs.time", Value: "2026-12-04T17:07:53Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := versionText(bi, "2026-12-04T18:00:00Z")
	for _, want := range []string{
		"modelslot v0.3.0\n",
		"revision:    c16334a0f1+dirty\n",
		"commit time: 2026-12-04T17:07:53Z\n",
		"build time:  2026-12-04T18:00:00Z\n",
		"go:          go1.26.8 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("versionText:\n%s\nwant it to contain %q", got, want)
		}
	}
	if got := versionText(nil, ""); !strings.Contains(got, "modelslot unknown\n") || !strings.Contains(got, "revision:    unknown\n") {
		t.Errorf("versionText without build info:\n%s", got)
	}
}

func TestVersionCommandAndFlag(t *testing.T) {
	cmd := mustRun(t, "version")
	flag := mustRun(t, "--version")
	if !strings.HasPrefix(cmd, "modelslot ") || !strings.Contains(cmd, "revision:") || !strings.Contains(cmd, "build time:") {
		t.Errorf("modelslot version:\n%s", cmd)
	}
	if cmd != flag {
		t.Errorf("modelslot --version:\n%s\nwant the same as modelslot version:\n%s", flag, cmd)
	}
}
