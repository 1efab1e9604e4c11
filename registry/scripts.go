package registry

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed common.lua
	commonLua string
	//go:embed write.lua
	writeLua string
	//go:embed schedule_add.lua
	scheduleAddLua string
	//go:embed schedule_cancel.lua
	scheduleCancelLua string
	//go:embed schedule_due.lua
	scheduleDueLua string
	//go:embed commit.lua
	commitLua string
	//go:embed node_assignment.lua
	nodeAssignmentLua string
	//go:embed health.lua
	healthLua string
	//go:embed catalog.lua
	catalogLua string
)

// Every script is common.lua (helpers) followed by the script itself.
var (
	writeScript          = newScript(writeLua)
	scheduleAddScript    = newScript(scheduleAddLua)
	scheduleCancelScript = newScript(scheduleCancelLua)
	scheduleDueScript    = newScript(scheduleDueLua)
	commitScript         = newScript(commitLua)
	nodeAssignmentScript = newScript(nodeAssignmentLua)
	healthScript         = newScript(healthLua)
	catalogScript        = newScript(catalogLua)
)

func newScript(src string) *redis.Script { return redis.NewScript(commonLua + "\n" + src) }
