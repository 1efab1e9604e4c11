package simulate

import "errors"

// ErrInvalidConfig means a Config that Validate refuses.
var ErrInvalidConfig = errors.New("simulate: invalid config")
