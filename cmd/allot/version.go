package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { commandFactories = append(commandFactories, newVersionCommand) }

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// Without it buildVersion falls back to the module version the go command
// stamped (`go install …@v1.2.3`, or a pseudo-version from the VCS), and to
// "dev" only when there is none.
var version = "dev"

// versionInfo is the JSON/YAML of `allot version`.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
}

func buildVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, bi)
}

// versionOf is the version of a binary stamped with ldflag (-X main.version)
// and built as bi says (nil: no build info): the stamp, else the module
// version the go command recorded (`go install …@v1.2.3`, or a pseudo-version
// from the VCS), else "dev"; plus the VCS revision when recorded.
func versionOf(ldflag string, bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: ldflag, Go: runtime.Version()}
	if bi == nil {
		return v
	}
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v.Commit = s.Value
		}
	}
	return v
}

// line is the version as `allot version` and `allot --version` print it,
// after "allot ".
func (v versionInfo) line() string {
	if v.Commit != "" {
		return fmt.Sprintf("%s (%s, commit %.12s)", v.Version, v.Go, v.Commit)
	}
	return fmt.Sprintf("%s (%s)", v.Version, v.Go)
}

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of allot",
		Args:  exactArgs(),
		RunE: func(*cobra.Command, []string) error {
			v := buildVersion()
			return a.print(v, func() table {
				return table{title: []string{"allot " + v.line()}}
			})
		},
	}
}
