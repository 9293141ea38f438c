package agent

import "golang.org/x/sys/unix"

// waitExited blocks until process pid exits, leaving it a zombie (WNOWAIT)
// so that its pid and process group id stay reserved until it is reaped.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err
		}
	}
}
