package killswitch

import "errors"

// ErrKilled is what a killed client's calls fail with when New was given
// no error of its own.
var ErrKilled = errors.New("killswitch: killed")
