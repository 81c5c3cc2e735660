package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildTime is set by scripts/release.sh (-ldflags "-X main.buildTime=...");
// the Go toolchain records the commit's time but not the build's.
var buildTime string

func init() {
	commands = append(commands, func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the module version, VCS revision and build time",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				bi, _ := debug.ReadBuildInfo()
				fmt.Fprintln(cmd.OutOrStdout(), versionText(bi, buildTime))
				return nil
			},
		}
	})
}

// setVersion makes `modelslot --version` print what `modelslot version` does.
func setVersion(root *cobra.Command) {
	bi, _ := debug.ReadBuildInfo()
	root.Version = versionText(bi, buildTime)
	root.SetVersionTemplate("{{.Version}}\n")
}

// versionText says which build this is: the module version (a tag for
// `go install ...@v1.2.3`, "(devel)" for a build from a checkout), the VCS
// revision with "+dirty" when the tree had changes, the commit's time and,
// when the release script set it, the build's time.
func versionText(bi *debug.BuildInfo, built string) string {
	version, revision, commitTime, dirty := "unknown", "unknown", "unknown", false
	goVersion := runtime.Version()
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				commitTime = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		revision += "+dirty"
	}
	if built == "" {
		built = "unknown (set by scripts/release.sh)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "modelslot %s\n", version)
	fmt.Fprintf(&b, "revision:    %s\n", revision)
	fmt.Fprintf(&b, "commit time: %s\n", commitTime)
	fmt.Fprintf(&b, "build time:  %s\n", built)
	fmt.Fprintf(&b, "go:          %s %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
