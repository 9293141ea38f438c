//go:build !linux

package agent

import "errors"

// waitExited is not available here: the shell is reaped without first
// killing what its job left behind in the group.
func waitExited(pid int) error { return errors.ErrUnsupported }
