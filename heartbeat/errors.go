package heartbeat

import "errors"

// ErrConfigMismatch means a process was configured with a heartbeat Config
// that differs from the one stored for its namespace (`allot namespace set`):
// a reaper would judge its nodes by a TTL they do not use.
var ErrConfigMismatch = errors.New("heartbeat: config differs from the namespace settings")

var (
	// ErrInvalidConfig is returned by Config.Validate and New for a Config
	// that cannot work (Interval <= 0, or TTL shorter than 3 × Interval), and
	// by New for an invalid namespace.
	ErrInvalidConfig = errors.New("heartbeat: invalid config")

	// ErrInvalidNode is returned for a node ID that cannot be stored (empty,
	// longer than MaxNodeIDLen bytes, not UTF-8, or containing a control
	// character, a comma or whitespace), or for a held group name containing a
	// comma.
	ErrInvalidNode = errors.New("heartbeat: invalid node")
)
