//go:build unix

package coordinator

import "syscall"

// fileLimit returns the process's open-file limit (RLIMIT_NOFILE), its
// soft value raised to the hard one first if it was lower. Go does that
// itself at start on Linux since 1.19; a process started another way, or
// elsewhere, may still have a low soft limit.
func fileLimit() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		} // else (macOS refuses an unlimited soft limit): keep the soft one
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}
