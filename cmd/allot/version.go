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
	v := versionInfo{Version: version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Commit = s.Value
			}
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
