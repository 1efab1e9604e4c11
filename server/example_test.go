package server_test

import (
	"fmt"
	"strings"

	"github.com/allot-io/allot/server"
)

// Node tokens bound to node ID patterns, as ALLOT_NODE_TOKENS and a
// --node-tokens file write them.
func ExampleParseNodeTokens() {
	env, _ := server.ParseNodeTokens("tok-api-0123=api-*, tok-worker-4567=worker-?")
	file, _ := server.ReadNodeTokens(strings.NewReader("# batch jobs\ntok-batch-89ab batch-[0-9]*\n"))
	t := server.Tokens{Admin: "admin-token-0123456789", Nodes: append(env, file...)}
	fmt.Println(t.Validate())
	for _, n := range t.Nodes {
		fmt.Println(n.Pattern)
	}
	// Output:
	// <nil>
	// api-*
	// worker-?
	// batch-[0-9]*
}
