// Command allot manages a pool of API-key groups handed out to the live nodes
// of a cluster through Redis. See docs/cli.md.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
