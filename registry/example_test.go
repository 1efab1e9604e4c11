package registry_test

import (
	"fmt"

	"github.com/allot-io/allot/registry"
)

func ExampleParseQuota() {
	q, err := registry.ParseQuota("600/m burst 20")
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Rate, q.Per, q.Burst)
	fmt.Println(q.String())
	fmt.Println(q.Share(4), q.Share(7))
	// Output:
	// 600 1m0s 20
	// 600/m burst 20
	// 150/m 85.71/m
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
