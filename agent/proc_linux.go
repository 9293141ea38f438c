package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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

// bootID tells this boot from the others: start times count from boot.
var bootID = sync.OnceValue(func() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return string(bytes.TrimSpace(b))
})

// errBadStat means /proc/<pid>/stat could not be parsed.
var errBadStat = errors.New("malformed /proc stat")

// procStat returns a process's state letter and its start time (clock
// ticks after boot) from /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may hold anything, spaces
	// and parentheses included: count the fields after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%w: pid %d", errBadStat, pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 { // f[0] is field 3 (state), f[19] field 22 (starttime)
		return 0, 0, fmt.Errorf("%w: pid %d", errBadStat, pid)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: pid %d: %v", errBadStat, pid, err)
	}
	return f[0][0], start, nil
}

// identify returns what tells process pid from a later one with its pid.
func identify(pid int) (procIdent, error) {
	_, start, err := procStat(pid)
	return procIdent{Start: start, Boot: bootID()}, err
}

// state tells what became of the process id identifies.
func (id procIdent) state(pid int) procState {
	if pid <= 0 || id.Boot != bootID() {
		return procOther // nothing of ours survives a reboot
	}
	st, start, err := procStat(pid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return procGone
	case err != nil, start != id.Start:
		return procOther
	case st == 'Z' || st == 'X':
		return procDead
	}
	return procAlive
}

// leaseClock reads CLOCK_BOOTTIME in ns: the same for every process of
// the host, unmoved by wall-clock changes, and it counts a suspend (the
// coordinators' clocks do too).
func leaseClock() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic(err) // available since Linux 2.6.39
	}
	return ts.Nano()
}

// killSession sends SIGKILL to every process of session sid, group by
// group, until none is left: what a supervisor (the session's leader,
// sid its pid) that died without a result left running. Only for a
// supervisor whose pid is free or still its zombie's: a session id is not
// reused while the session has members.
func killSession(sid int) {
	if sid <= 1 {
		return
	}
	for range 100 {
		found := false
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == sid {
				continue
			}
			st, pgrp, session, err := procSession(pid)
			if err != nil || session != sid || st == 'Z' || st == 'X' {
				continue
			}
			found = true
			_ = syscall.Kill(-pgrp, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(time.Millisecond) // let them die, and catch the ones forked meanwhile
	}
}

// procSession returns a process's state letter, process group and session
// from /proc/<pid>/stat.
func procSession(pid int) (state byte, pgrp, session int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("%w: pid %d", errBadStat, pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 4 || len(f[0]) != 1 { // f[2] is field 5 (pgrp), f[3] field 6 (session)
		return 0, 0, 0, fmt.Errorf("%w: pid %d", errBadStat, pid)
	}
	if pgrp, err = strconv.Atoi(string(f[2])); err == nil {
		session, err = strconv.Atoi(string(f[3]))
	}
	return f[0][0], pgrp, session, err
}

// datasync flushes f's data, and the metadata needed to read it back, to
// disk: cheaper than fsync, which also writes timestamps.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// soleOpener reports whether f is the only open file description of its
// file: the kernel grants a write lease only then. Any error (a file system
// without leases) counts as shared.
func soleOpener(f *os.File) bool {
	fd := int(f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return false
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return true
}
