package quota_test

import (
	"errors"
	"fmt"

	"github.com/allot-io/allot/quota"
)

func ExampleParse() {
	ls, err := quota.Parse("600/m, 90000 tokens/m burst 30000, 10000/d")
	if err != nil {
		panic(err)
	}
	fmt.Println(ls)
	fmt.Println("each of 4 holders:", ls.Share(4))
	fmt.Printf("weight auto: %.2f\n", ls.AutoWeight())
	err = ls.CheckCost(1, 40000)
	fmt.Println(errors.Is(err, quota.ErrCostTooLarge), err)

	_, err = quota.Parse("600/m, 90000 tokns/m")
	fmt.Println(err)
	// Output:
	// 600/m, 90000 tokens/m burst 30000, 10000/d
	// each of 4 holders: 150/m, 22500 tokens/m, 2500/d
	// weight auto: 6.94
	// true quota: cost 40000 is above the burst 30000 of limit "90000 tokens/m burst 30000"
	// quota: limit 2 ("90000 tokns/m"): unknown kind "tokns" (want tokens, or nothing for requests)
}
