package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// Layout of DataDir (see DESIGN.md):
//
//	lock                          flock: one agent per directory
//	lease                         leaseClock() of the last full heartbeat round
//	attempts/<id>/journal.json    the attempt: assignment, worker, supervisor, acked offset
//	attempts/<id>/output          the job's stdout and stderr (the spool)
//	attempts/<id>/result.json     how it ended, written once by its supervisor
const (
	attemptsDir = "attempts"
	journalName = "journal.json"
	outputName  = "output"
	resultName  = "result.json"
	leaseName   = "lease"
)

// errBadLease means the lease file holds no clock reading.
var errBadLease = errors.New("malformed lease file")

// journal is what the agent keeps on disk about one attempt, so that an
// agent started later can finish it: deliver its output and its result,
// or report it lost.
type journal struct {
	Assignment client.Assignment `json:"assignment"`
	// Worker is the slot's worker name: reports go out under it.
	Worker string `json:"worker"`
	// Started is when the attempt started (Unix ns); its timeout counts
	// from here.
	Started int64 `json:"started"`
	// Pid is the supervisor's: the job's shell is its child, and the
	// job's process group is in its session (its pid is the session id).
	// 0: no supervisor was started.
	Pid int `json:"pid,omitempty"`
	// Ident tells the supervisor from a later process with the same pid.
	Ident procIdent `json:"ident"`
	// Acked is how many output bytes the coordinator acknowledged (or
	// refused for good), Dropped how many of them it refused: reports
	// resume from Acked at coordinator offset Acked-Dropped. Written
	// without fsync: a stale value only resends bytes the coordinator
	// skips.
	Acked   int64 `json:"acked"`
	Dropped int64 `json:"dropped"`
}

// result is how an attempt ended. The supervisor writes it to
// result.json; the agent reads it, or makes one up when there is none.
type result struct {
	// ExitCode is the shell's exit code, 128+N if signal N killed it,
	// ExitNotStarted or ExitTimedOut.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that ended the shell, if one did.
	Signal string `json:"signal,omitempty"`
	// TimedOut: the attempt ran past its timeout and was killed.
	TimedOut bool `json:"timed_out,omitempty"`
	// Killed: the coordinator asked for it to be killed.
	Killed bool `json:"killed,omitempty"`
	// Lost: stopped for a reason that is not the job's (the agent stopped
	// or lost its coordinators, the supervisor or the host died): the
	// coordinator requeues it without counting a run.
	Lost bool `json:"lost,omitempty"`
	// Fenced: the supervisor stopped it itself because the agent's lease
	// ran out (implies Lost).
	Fenced bool `json:"fenced,omitempty"`
	// OutputSize is the output's size when the shell ended; later bytes
	// (from a process that escaped the group) are not sent. -1: unknown,
	// send the whole file.
	OutputSize int64 `json:"output_size"`
	// Note says why, for the agent's log.
	Note string `json:"note,omitempty"`
	// Err says why the command could not start (in memory only).
	Err error `json:"-"`
}

// lost returns the result of an attempt whose process ended without one.
func lost(note string) result {
	return result{ExitCode: ExitNotStarted, Lost: true, OutputSize: -1, Note: note}
}

// writeAtomic replaces file with data: readers see the old content or the
// new, never a mix. With sync, the data and the rename are on disk when it
// returns (a power loss keeps them).
func writeAtomic(file string, data []byte, sync bool) error {
	dir := filepath.Dir(file)
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeJSON(file string, v any, sync bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeAtomic(file, b, sync)
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// writeJournal saves j in attempt directory dir. Not synced: losing it
// takes a power loss, which also ends the job, and the coordinator then
// requeues the attempt when the worker asks for work.
func writeJournal(dir string, j *journal) error {
	return writeJSON(filepath.Join(dir, journalName), j, false)
}

func readJournal(dir string) (*journal, error) {
	var j journal
	if err := readJSON(filepath.Join(dir, journalName), &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// writeResult records how an attempt ended, synced: once written, a
// restart delivers it instead of running the job again.
func writeResult(dir string, r result) error {
	return writeJSON(filepath.Join(dir, resultName), r, true)
}

// readResult returns the attempt's result; an error wrapping
// fs.ErrNotExist while there is none.
func readResult(dir string) (result, error) {
	var r result
	err := readJSON(filepath.Join(dir, resultName), &r)
	return r, err
}

// appendOutput adds an agent's note to an attempt's output.
func appendOutput(dir, text string) error {
	f, err := os.OpenFile(filepath.Join(dir, outputName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeLease records that the agent is in touch with its coordinators
// as of leaseClock() reading now.
func writeLease(file string, now int64) error {
	return writeAtomic(file, []byte(strconv.FormatInt(now, 10)), false)
}

// readLease returns the clock reading of the last lease; an error
// wrapping fs.ErrNotExist if there never was one.
func readLease(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", errBadLease, file)
	}
	return v, nil
}

// leaseAge returns how long ago the lease was renewed, measured from
// since when there is no lease file yet.
func leaseAge(file string, since int64) (time.Duration, error) {
	last, err := readLease(file)
	if errors.Is(err, fs.ErrNotExist) {
		last, err = since, nil
	}
	return time.Duration(leaseClock() - last), err
}

// attemptIDs returns the attempt directories under root, by attempt id.
func attemptIDs(root string) ([]int64, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, e := range entries {
		if id, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && e.IsDir() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}
