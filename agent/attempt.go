package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// Layout of DataDir (see DESIGN.md). A slot keeps one directory and the
// same files for all its attempts, rewritten in place: creating and
// deleting files and directories per attempt cost more than the job itself
// for short jobs.
//
//	lock                     flock: one agent per directory
//	lease                    leaseClock() of the last full heartbeat round
//	slots/<n>/journal.json   the slot's attempt (assignment, worker, supervisor,
//	                         acked offset); {} once the coordinator is done with it
//	slots/<n>/output         that attempt's stdout (the spool), emptied when
//	                         it is over (see clearOutput)
//	slots/<n>/stderr         that attempt's stderr, the same way
//	slots/<n>/result.json    the last result written in the slot, naming its attempt
const (
	slotsDir    = "slots"
	journalName = "journal.json"
	outputName  = "output"
	stderrName  = "stderr"
	resultName  = "result.json"
	leaseName   = "lease"
	// unreadableSuffix marks a journal set aside because it could not be
	// read, so that its slot can take work again.
	unreadableSuffix = ".unreadable"
)

var (
	// errBadLease means the lease file holds no clock reading.
	errBadLease = errors.New("malformed lease file")
	// errNoAttempt means a slot's journal names no attempt: the slot is
	// free. It wraps fs.ErrNotExist.
	errNoAttempt = fmt.Errorf("no attempt journaled: %w", fs.ErrNotExist)
	// errNoResult means a slot's result file holds no result for the
	// attempt asked about. It wraps fs.ErrNotExist.
	errNoResult = fmt.Errorf("no result recorded: %w", fs.ErrNotExist)
	// errTorn means a record failed its checksum: a write cut short, by a
	// power loss or a kill between its two system calls.
	errTorn = errors.New("record torn or corrupt")
)

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
	// LogFull: the coordinator said the job's log reached the farm's
	// cap (both streams together); no more output of either stream is
	// sent for this attempt (it stays in the spool), only the result.
	LogFull bool `json:"log_full,omitempty"`
	// ErrAcked and ErrDropped are Acked and Dropped for the job's
	// standard error, a stream with offsets of its own. A journal of an
	// agent that mixed both streams in the output has neither: 0.
	ErrAcked   int64 `json:"err_acked,omitempty"`
	ErrDropped int64 `json:"err_dropped,omitempty"`
}

// result is how an attempt ended. The supervisor writes it to its slot's
// result.json and sends it with its done event; the agent makes one up
// when there is none.
type result struct {
	// AttemptID names the attempt: the slot's result file keeps the last
	// result written there, which may be an earlier attempt's.
	AttemptID int64 `json:"attempt_id"`
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
	// OutputSize is the stdout file's size when the shell ended; later
	// bytes (from a process that escaped the group) are not sent. -1:
	// unknown, send the whole file.
	OutputSize int64 `json:"output_size"`
	// Note says why, for the agent's log.
	Note string `json:"note,omitempty"`
	// Err says why the command could not start (in memory only).
	Err error `json:"-"`
	// StderrSize is OutputSize for the stderr file. A result written by
	// a supervisor that mixed both streams in the output has none (0):
	// it wrote no stderr file either.
	StderrSize int64 `json:"stderr_size"`
}

// unknownSizes marks a result made without looking at the output files:
// they are sent whole.
func (r result) unknownSizes() result {
	r.OutputSize, r.StderrSize = -1, -1
	return r
}

// sizes returns the output sizes per stream (see streamFiles).
func (r result) sizes() [numStreams]int64 {
	return [numStreams]int64{r.OutputSize, r.StderrSize}
}

// lost returns the result of an attempt whose process ended without one.
func lost(id int64, note string) result {
	return result{AttemptID: id, ExitCode: ExitNotStarted, Lost: true, Note: note}.unknownSizes()
}

// writeRecord replaces file's record with data, in place: the file keeps
// its inode, so rewriting it allocates nothing. The record is the data, a
// newline and its CRC-32C, so that readRecord tells a write cut short (a
// power loss) from a whole one. The file is never truncated: bytes of a
// longer earlier record may follow the new one, and readers ignore them
// (truncating would also make ext4 flush the file on close, a disk write
// per rewrite). With sync, the record is on disk when it returns; the first
// write of a file also syncs its directory, so the name survives a power
// loss.
func writeRecord(file string, data []byte, sync bool) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o644)
		created = true
	}
	if err != nil {
		return err
	}
	rec := make([]byte, 0, len(data)+16)
	rec = append(rec, data...)
	rec = fmt.Appendf(rec, "\n%08x\n", crc32.Checksum(data, castagnoli))
	_, err = f.WriteAt(rec, 0)
	if err == nil && sync {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && sync && created {
		err = syncDir(filepath.Dir(file))
	}
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readRecord returns the record in file: nil for an empty file, errTorn
// if it fails its checksum. Bytes after the record (left by a longer
// earlier one) are ignored.
func readRecord(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	data, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || len(rest) < 9 || rest[8] != '\n' {
		return nil, fmt.Errorf("%s: %w", file, errTorn)
	}
	sum, err := strconv.ParseUint(string(rest[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(data, castagnoli) {
		return nil, fmt.Errorf("%s: %w", file, errTorn)
	}
	return data, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeJournal saves j as its slot's attempt (dir is the slot's
// directory). Not synced: losing it takes a power loss, which also ends
// the job, and the coordinator then requeues the attempt when the worker
// asks for work.
func writeJournal(dir string, j *journal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return writeRecord(filepath.Join(dir, journalName), b, false)
}

// readJournal returns the slot's attempt; an error wrapping
// fs.ErrNotExist when it has none.
func readJournal(dir string) (*journal, error) {
	b, err := readRecord(filepath.Join(dir, journalName))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errNoAttempt
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, journalName), err)
	}
	if j.Assignment.AttemptID == 0 {
		return nil, errNoAttempt // cleared
	}
	return &j, nil
}

// clearJournal frees the slot: the coordinator is done with its attempt.
// The journal is rewritten to name no attempt (not truncated: see
// writeRecord).
func clearJournal(dir string) error {
	return writeRecord(filepath.Join(dir, journalName), []byte("{}"), false)
}

// setJournalAside renames an unreadable journal, so that the slot can take
// work again while the file stays for a human to look at.
func setJournalAside(dir string) error {
	file := filepath.Join(dir, journalName)
	return os.Rename(file, file+unreadableSuffix)
}

// writeResult records how an attempt ended in its slot (dir), synced if
// asked (else see syncResult): once written, a restart delivers it instead
// of running the job again.
func writeResult(dir string, r result, sync bool) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeRecord(filepath.Join(dir, resultName), b, sync)
}

// syncResult puts a result written without sync on disk, and the file's
// name with it (its first write may have created it).
func syncResult(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, resultName), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = datasync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// readResult returns attempt id's result from its slot (dir); an error
// wrapping fs.ErrNotExist while there is none (the file holds nothing, or
// an earlier attempt's result), errTorn if it was cut short.
func readResult(dir string, id int64) (result, error) {
	var r result
	b, err := readRecord(filepath.Join(dir, resultName))
	switch {
	case err != nil:
		return r, err
	case b == nil:
		return r, errNoResult
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return result{}, fmt.Errorf("%s: %w", filepath.Join(dir, resultName), err)
	}
	if r.AttemptID != id {
		return result{}, errNoResult
	}
	return r, nil
}

// newOutput puts empty output files (stdout and stderr) in place for the
// slot's next attempt. The last attempt's were cleared when it was over
// (see clearOutput): each is empty and nobody holds it, or it is gone. One
// that is not empty (not expected) is cleared now.
func newOutput(dir string) error {
	for _, name := range streamFiles {
		if err := newOutputFile(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func newOutputFile(file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil || fi.Size() == 0 {
		return err
	}
	if err := clearOutputFile(file); err != nil {
		return err
	}
	f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// clearOutput empties the slot's output files once its attempt is over.
// A file is truncated and kept when no process holds it open: creating a
// file per attempt costs an inode allocation, the dearest step of a short
// attempt on some file systems. A process the attempt left running (one
// that escaped its group) may still hold it: then the file is removed
// instead, so that what it writes later goes to the old file, never into
// the next attempt's log.
func clearOutput(dir string) error {
	var errs []error
	for _, name := range streamFiles {
		errs = append(errs, clearOutputFile(filepath.Join(dir, name)))
	}
	return errors.Join(errs...)
}

func clearOutputFile(file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if soleOpener(f) {
		err = f.Truncate(0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	f.Close()
	err = os.Remove(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// appendNote adds an agent's or a supervisor's note (why the command did
// not start, why it was stopped) to an attempt's stderr: the job's own
// diagnostics go there too.
func appendNote(dir, text string) error {
	f, err := os.OpenFile(filepath.Join(dir, stderrName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeAtomic replaces file with data: readers see the old content or the
// new, never a mix (a temporary file renamed over it).
func writeAtomic(file string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// writeLease records that the agent is in touch with its coordinators
// as of leaseClock() reading now.
func writeLease(file string, now int64) error {
	return writeAtomic(file, []byte(strconv.FormatInt(now, 10)))
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

// slotDirs returns the slot directories under root, in slot order.
func slotDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 0 && e.IsDir() {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	dirs := make([]string, len(nums))
	for i, n := range nums {
		dirs[i] = filepath.Join(root, strconv.Itoa(n))
	}
	return dirs, nil
}
