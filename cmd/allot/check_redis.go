package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/internal/redisacl"
)

// checkRedisResult is the JSON/YAML of `allot check redis`.
type checkRedisResult struct {
	Namespace string           `json:"namespace"`
	User      string           `json:"user"`
	Rights    []redisacl.Right `json:"rights"`
	Beyond    []string         `json:"beyond_node"`
	Missing   []string         `json:"missing_for_node"`
	NodeRule  string           `json:"node_rule"`
}

func newCheckRedisCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "redis",
		Short: "Report which Redis rights the current credentials have beyond those a node needs",
		Long: `Probe the rights of the credentials in --redis: each command or key is sent
inside MULTI and discarded, so nothing runs; Redis refuses it (NOPERM) or queues
it. The report lists the rights a node of --namespace needs that are refused
(a node cannot work: exit 1) and the rights granted beyond them (keys outside
the namespace, FLUSHALL, CONFIG, SCAN...): credentials a node should not get.
It prints the ACL SETUSER rule that grants a node exactly what it needs (see
docs/security.md).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			rdb, err := a.rdb(ctx)
			if err != nil {
				return err
			}
			rep, err := redisacl.Probe(ctx, rdb, a.namespace)
			if err != nil {
				return fmt.Errorf("check redis: %w", err)
			}
			res := checkRedisResult{Namespace: a.namespace, User: rep.User, Rights: rep.Rights,
				Beyond: []string{}, Missing: []string{}, NodeRule: redisacl.NodeRule(a.namespace)}
			for _, r := range rep.Beyond() {
				res.Beyond = append(res.Beyond, r.Name)
			}
			for _, r := range rep.Missing() {
				res.Missing = append(res.Missing, r.Name)
			}
			if err := a.print(res, func() table { return checkRedisTable(res) }); err != nil {
				return err
			}
			if len(res.Missing) > 0 {
				return &shownError{msg: fmt.Sprintf("check redis: a node of %q cannot work with these credentials: %d needed rights refused", a.namespace, len(res.Missing))}
			}
			return nil
		},
	}
}

// checkRedisTable is the table of `allot check redis`.
func checkRedisTable(r checkRedisResult) table {
	user := r.User
	if user == "" {
		user = "(ACL WHOAMI refused)"
	}
	t := table{
		title:  []string{fmt.Sprintf("user %s, namespace %s", user, r.Namespace)},
		header: []string{"RIGHT", "GRANTED", "A NODE NEEDS IT", "VERDICT"},
	}
	for _, x := range r.Rights {
		v := "ok"
		switch {
		case x.NodeNeeds && !x.Allowed:
			v = "MISSING"
		case !x.NodeNeeds && x.Allowed:
			v = "BEYOND A NODE"
		}
		t.rows = append(t.rows, []string{x.Name, yesNo(x.Allowed), yesNo(x.NodeNeeds), v})
	}
	switch {
	case len(r.Beyond) == 0 && len(r.Missing) == 0:
		t.footer = append(t.footer, "Least privilege: these credentials grant a node what it needs and nothing more that was probed.")
	case len(r.Beyond) > 0:
		t.footer = append(t.footer, fmt.Sprintf("%d rights beyond what a node needs: give nodes their own user, e.g.", len(r.Beyond)),
			"  ACL SETUSER allot-node >PASSWORD "+r.NodeRule)
	}
	return t
}
