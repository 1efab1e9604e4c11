package registry_test

import (
	"fmt"

	"github.com/allot-io/allot/registry"
)

func ExampleParseQuota() {
	q, err := registry.ParseQuota("600/m burst 20, 90000 tokens/m, 10000/d")
	if err != nil {
		panic(err)
	}
	fmt.Println(q[0].Rate, q[0].Per, q[0].Burst, q[1].Kind)
	fmt.Println(q.String())
	fmt.Println(q.Share(4))
	_, err = registry.ParseQuota("600/m, 90000 tokns/m")
	fmt.Println(err)
	// Output:
	// 600 1m0s 20 tokens
	// 600/m burst 20, 90000 tokens/m, 10000/d
	// 150/m, 22500 tokens/m, 2500/d
	// registry: invalid quota: limit 2 ("90000 tokns/m"): unknown kind "tokns" (want tokens, or nothing for requests)
}

func ExampleGroup_Masked() {
	g := registry.Group{
		Name:       "openai-1",
		Config:     map[string]string{"api_key": "sk-live-0123456789abcd", "pin": "42", "region": "eu"},
		SecretKeys: []string{"api_key", "pin"},
	}
	m := g.Masked()
	fmt.Println(m.Config["api_key"], m.Config["pin"], m.Config["region"])
	// Output: ****abcd **** eu
}
