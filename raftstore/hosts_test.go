package raftstore

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// slot registers worker as a slot of host, as the agent API does.
func (h *harness) slot(worker, host string, projects []string, interps ...HostInterpreter) {
	h.t.Helper()
	h.ok(&WorkerRegister{Now: h.now, Name: worker, IP: "10.0.0.9", Projects: projects,
		Host: &HostInfo{Name: host, Slots: 2, CPUs: 16, TotalMemory: 64 << 10, Interpreters: interps}})
}

func (h *harness) host(name string) Host {
	h.t.Helper()
	x, ok := h.st().Host(name)
	if !ok {
		h.t.Fatalf("host %q missing", name)
	}
	return x
}

func (h *harness) noHost(name string) {
	h.t.Helper()
	if x, ok := h.st().Host(name); ok {
		h.t.Fatalf("host %q still there: %+v", name, x)
	}
}

var sh = HostInterpreter{Name: "sh", Path: "/bin/sh"}

func TestHostRegisterAndReregister(t *testing.T) {
	h := newHarness(t)
	first := h.now
	h.slot("r1", "r1", nil, sh)
	h.tick(5)
	h.slot("r1/2", "r1", nil, sh, HostInterpreter{Name: "python3", Path: "/usr/bin/python3"})
	x := h.host("r1")
	if !slices.Equal(x.Slots, []string{"r1", "r1/2"}) || x.SlotCount != 2 || x.CPUs != 16 || x.TotalMemory != 64<<10 {
		t.Fatalf("host %+v", x)
	}
	if len(x.Interpreters) != 2 || x.Interpreters[1].Path != "/usr/bin/python3" {
		t.Fatalf("interpreters %+v", x.Interpreters)
	}
	if x.FirstRegistered != first || x.LastRegistered != h.now || x.Projects != nil {
		t.Fatalf("times or projects %+v", x)
	}
	if n, ok := h.st().HostOf("r1/2"); !ok || n != "r1" {
		t.Fatalf("HostOf r1/2: %q %v", n, ok)
	}
	// A re-registration replaces what the agent advertises, keeps the
	// slots and the first registration time, and takes the token's
	// projects.
	h.tick(5)
	h.ok(&WorkerRegister{Now: h.now, Name: "r1", Projects: []string{DefaultProject},
		Host: &HostInfo{Name: "r1", Slots: 4, CPUs: 8}})
	x = h.host("r1")
	if !slices.Equal(x.Slots, []string{"r1", "r1/2"}) || x.SlotCount != 4 || x.CPUs != 8 || x.TotalMemory != 0 ||
		len(x.Interpreters) != 0 || x.FirstRegistered != first || !slices.Equal(x.Projects, []string{DefaultProject}) {
		t.Fatalf("host after re-registration %+v", x)
	}
	// A heartbeat's re-registration (no host) leaves it as it is.
	h.ok(&WorkerRegister{Now: h.now + 1, Name: "r1/2"})
	if y := h.host("r1"); y.LastRegistered != x.LastRegistered || len(y.Slots) != 2 {
		t.Fatalf("host after a hostless registration %+v", y)
	}
	// A slot that moves to another host leaves the first; a host left
	// with no slot is forgotten.
	h.slot("r1/2", "r2", nil)
	h.slot("r1", "r2", nil)
	h.noHost("r1")
	if x := h.host("r2"); !slices.Equal(x.Slots, []string{"r1", "r1/2"}) {
		t.Fatalf("host r2 %+v", x)
	}
	if page, _, more := h.st().HostsAfter("", 10); len(page) != 1 || more || h.st().HostCount() != 1 {
		t.Fatalf("hosts %+v %v", page, more)
	}
}

func TestHostForgottenWithItsLastSlot(t *testing.T) {
	h := newHarness(t)
	h.slot("a", "a", nil)
	h.slot("a/2", "a", nil)
	h.slot("b", "b", nil)
	h.ok(&WorkerDelete{Now: h.now, Names: []string{"a"}})
	if x := h.host("a"); !slices.Equal(x.Slots, []string{"a/2"}) {
		t.Fatalf("host a after deleting a slot %+v", x)
	}
	// Expiry forgets a lost worker, and with it its host.
	h.ok(&WorkerLost{Now: h.now, Names: []string{"a/2"}})
	h.tick(60)
	h.ok(&WorkerExpire{Now: h.now, Before: h.now, Names: []string{"a/2"}})
	h.noHost("a")
	if _, ok := h.st().HostOf("a/2"); ok {
		t.Fatal("an expired worker still names its host")
	}
	h.ok(&WorkerDelete{Now: h.now, Names: []string{"b"}})
	h.noHost("b")
	if n := h.st().HostCount(); n != 0 {
		t.Fatalf("%d hosts left", n)
	}
}

func TestHostBoundsRefused(t *testing.T) {
	h := newHarness(t)
	h.slot("ok", "ok", nil, sh)
	many := make([]HostInterpreter, MaxHostInterpreters+1)
	for i := range many {
		many[i] = HostInterpreter{Name: "i" + strconv.Itoa(i), Path: "/bin/x"}
	}
	for _, c := range []struct {
		hi   HostInfo
		want error
	}{
		{HostInfo{Name: ""}, ErrInvalid},
		{HostInfo{Name: "x\x00"}, ErrInvalid},
		{HostInfo{Name: "a\nb"}, ErrInvalid},
		{HostInfo{Name: strings.Repeat("h", MaxNameBytes+1)}, ErrTooLarge},
		{HostInfo{Name: "h", Slots: -1}, ErrInvalid},
		{HostInfo{Name: "h", Slots: MaxHostSlots + 1}, ErrInvalid},
		{HostInfo{Name: "h", CPUs: MaxHostCPUs + 1}, ErrInvalid},
		{HostInfo{Name: "h", TotalMemory: -1}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: many}, ErrTooLarge},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{sh, sh}}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{{Name: "a b", Path: "/bin/sh"}}}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{{Name: "sh", Path: "bin/sh"}}}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{{Name: "sh", Path: "/bin/s\nh"}}}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{{Name: "sh", Path: "/bin/\x00"}}}, ErrInvalid},
		{HostInfo{Name: "h", Interpreters: []HostInterpreter{{Name: "sh", Path: "/" + strings.Repeat("p", 4096)}}}, ErrTooLarge},
	} {
		h.fails(&WorkerRegister{Now: h.now, Name: "ok", Host: &c.hi}, c.want)
		h.fails(&WorkerRegister{Now: h.now, Name: "new", Host: &c.hi}, c.want)
	}
	if _, ok := h.st().Worker("new"); ok {
		t.Fatal("a refused registration created its worker")
	}
	// A host holds at most MaxHostSlots slots.
	for i := 1; i < MaxHostSlots; i++ {
		h.ok(&WorkerRegister{Now: h.now, Name: "ok/" + strconv.Itoa(i+1), Host: &HostInfo{Name: "ok"}})
	}
	h.fails(&WorkerRegister{Now: h.now, Name: "one-too-many", Host: &HostInfo{Name: "ok"}}, ErrTooLarge)
	h.ok(&WorkerRegister{Now: h.now, Name: "ok", Host: &HostInfo{Name: "ok", Slots: 3}}) // a slot it has already
	if x := h.host("ok"); len(x.Slots) != MaxHostSlots || x.SlotCount != 3 {
		t.Fatalf("full host: %d slots, count %d", len(x.Slots), x.SlotCount)
	}
}

func TestInterpreterRegistry(t *testing.T) {
	h := newHarness(t)
	created := h.now
	h.ok(&InterpreterSet{Now: h.now, Name: "python3-u", Template: "{interpreter} -u {file}", Uses: "python3"})
	h.tick(1)
	h.ok(&InterpreterSet{Now: h.now, Name: "bash", Template: "{interpreter} -c {code}"})
	h.tick(1)
	h.ok(&InterpreterSet{Now: h.now, Name: "python3-u", Template: "python3 -u {file}", Uses: "python3"})
	list := h.st().Interpreters()
	if len(list) != 2 || list[0].Name != "bash" || list[1].Template != "python3 -u {file}" || list[1].Created != created || list[1].Updated != h.now {
		t.Fatalf("interpreters %+v", list)
	}
	if in, ok := h.st().ConfiguredInterpreter("bash"); !ok || in.Detected() != "bash" || list[1].Detected() != "python3" {
		t.Fatalf("bash %+v %v", in, ok)
	}
	for _, c := range []struct {
		cmd  InterpreterSet
		want error
	}{
		{InterpreterSet{Name: "", Template: "{file}"}, ErrInvalid},
		{InterpreterSet{Name: "a/b", Template: "{file}"}, ErrInvalid},
		{InterpreterSet{Name: "x", Uses: "a b", Template: "{file}"}, ErrInvalid},
		{InterpreterSet{Name: "x", Template: ""}, ErrInvalid},
		{InterpreterSet{Name: "x", Template: "{nope}"}, ErrInvalid},
		{InterpreterSet{Name: "x", Template: "run {file"}, ErrInvalid},
		{InterpreterSet{Name: "x", Template: "a\x00{file}"}, ErrInvalid},
		{InterpreterSet{Name: "x", Template: strings.Repeat("x", 4<<10+1)}, ErrTooLarge},
	} {
		c.cmd.Now = h.now
		h.fails(&c.cmd, c.want)
	}
	h.ok(&InterpreterDelete{Now: h.now, Name: "bash"})
	h.fails(&InterpreterDelete{Now: h.now, Name: "bash"}, ErrNotFound)
	for i := len(h.st().Interpreters()); i < MaxInterpreters; i++ {
		h.ok(&InterpreterSet{Now: h.now, Name: "i" + strconv.Itoa(i+1), Template: "{interpreter} {file}"})
	}
	h.fails(&InterpreterSet{Now: h.now, Name: "one-too-many", Template: "{file}"}, ErrTooLarge)
	h.ok(&InterpreterSet{Now: h.now, Name: "python3-u", Template: "{interpreter} {file}", Uses: "python3"}) // a replace fits
}

func TestHostsAndInterpretersSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", []string{DefaultProject}, sh)
	h.slot("r1/2", "r1", []string{DefaultProject}, sh)
	h.slot("r2", "r2", nil)
	h.ok(&InterpreterSet{Now: h.now, Name: "py", Template: "{interpreter} {file}", Uses: "python3"})
	var buf bytes.Buffer
	if err := h.st().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	before := h.st().Digest()
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h.st().Digest() != before {
		t.Fatal("the round trip changed the state")
	}
	if x := h.host("r1"); !slices.Equal(x.Slots, []string{"r1", "r1/2"}) || x.Interpreters[0] != sh || !slices.Equal(x.Projects, []string{DefaultProject}) {
		t.Fatalf("restored host %+v", x)
	}
	if in, ok := h.st().ConfiguredInterpreter("py"); !ok || in.Uses != "python3" {
		t.Fatalf("restored interpreter %+v %v", in, ok)
	}
	// The derived slot index came back: deleting the last slots of r1
	// forgets it.
	h.ok(&WorkerDelete{Now: h.now, Names: []string{"r1", "r1/2"}})
	h.noHost("r1")
	h.host("r2")
}

// oldSnapshotData is snapshotData as the release before hosts wrote it.
type oldSnapshotData struct {
	Version     int
	Applied     uint64
	LastJobID   int64
	LastAttempt int64
	Jobs        []*Job
	Logs        map[int64][]byte
	Workers     []*Worker
	Events      []*Run
	Affinities  map[int]string
	Nodes       []NodeMeta
	Projects    []*Project
	Tokens      []*Token
}

// oldWorkerRegister is WorkerRegister as the release before hosts wrote it.
type oldWorkerRegister struct {
	Now         int64
	Name        string
	IP          string
	SetAffinity bool
	Affinity    string
	Projects    []string
}

func TestOlderSnapshotsAndEntriesHaveNoHosts(t *testing.T) {
	old := oldSnapshotData{Version: 2, Applied: 3, Workers: []*Worker{{Name: "w", State: WorkerStateIdle, Active: true}},
		Projects: []*Project{{Name: DefaultProject}}}
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(&old); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.st().Worker("w"); !ok || h.st().HostCount() != 0 || len(h.st().Interpreters()) != 0 {
		t.Fatalf("an older snapshot: worker %v, %d hosts", ok, h.st().HostCount())
	}
	buf.Reset()
	buf.WriteByte(byte(MsgWorkerRegister))
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(&oldWorkerRegister{Now: h.now, Name: "w2"}); err != nil {
		t.Fatal(err)
	}
	cmd, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if wr := cmd.(*WorkerRegister); wr.Name != "w2" || wr.Host != nil {
		t.Fatalf("an older entry decodes as %+v", wr)
	}
	h.ok(cmd)
	if _, ok := h.st().Worker("w2"); !ok || h.st().HostCount() != 0 {
		t.Fatal("an older registration made a host, or no worker")
	}
	// And a Host of the previous layout (fewer fields) decodes too.
	type hostV1 struct {
		_struct struct{} `codec:",toarray"`
		Name    string
		Slots   []string
	}
	buf.Reset()
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(&hostV1{Name: "h", Slots: []string{"h"}}); err != nil {
		t.Fatal(err)
	}
	var back Host
	if err := codec.NewDecoderBytes(buf.Bytes(), msgpackHandle).Decode(&back); err != nil || back.Name != "h" || back.CPUs != 0 {
		t.Fatalf("a shorter host array: %+v %v", back, err)
	}
}
