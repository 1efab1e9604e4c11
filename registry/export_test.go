package registry

// SetRotateHook makes fn run before each rotate script, and returns what
// puts the previous hook back (tests only).
func SetRotateHook(fn func()) (restore func()) {
	prev := rotateHook
	rotateHook = fn
	return func() { rotateHook = prev }
}
