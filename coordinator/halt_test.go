package coordinator

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
	"github.com/hashicorp/raft"
)

// haltTestLog collects a node's log lines.
type haltTestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *haltTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *haltTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// An entry of a type this release does not know: skipped when it carries
// the ignore flag, else the node halts, says so and stops its Raft node.
func TestHaltedNodeShutsDown(t *testing.T) {
	logs := &haltTestLog{}
	s := startServerIn(t, t.TempDir(), ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{Insecure: true}}, func(c *cluster.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := s.ctx(t)
	if _, err := s.c.CreateJob(ctx, client.NewJob{Title: "a", Command: "true"}); err != nil {
		t.Fatal(err)
	}
	r := s.srv.Node().Raft()
	apply := func(entry []byte) any {
		t.Helper()
		f := r.Apply(entry, 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		return f.Response()
	}
	body := []byte{0x91, 0x01}
	if res := apply(append([]byte{byte(100 | raftstore.IgnoreUnknownTypeFlag)}, body...)); res != nil {
		t.Fatalf("an ignorable unknown entry: %v", res)
	}
	if _, err := s.c.CreateJob(ctx, client.NewJob{Title: "b", Command: "true"}); err != nil {
		t.Fatalf("after an ignorable entry: %v", err)
	}

	res := apply(append([]byte{100}, body...))
	var he *raftstore.HaltError
	if err, _ := res.(error); !errors.As(err, &he) || he.Type != 100 {
		t.Fatalf("an unknown entry: %v", res)
	}
	select {
	case <-s.srv.Halted():
	case <-time.After(10 * time.Second):
		t.Fatal("Halted not closed")
	}
	nodeEventually(t, 10*time.Second, "raft shut down", func() (bool, string) {
		st := r.State()
		return st == raft.Shutdown, st.String()
	})
	if !errors.Is(s.srv.HaltErr(), raftstore.ErrHalted) {
		t.Fatalf("HaltErr %v", s.srv.HaltErr())
	}
	if err := s.srv.Close(); err != nil {
		t.Fatalf("close after the halt: %v", err)
	}
	want := "level=ERROR msg=\"this coordinator cannot apply entry " + strconv.FormatUint(he.Index, 10) + " of type 100 written by a newer release: upgrade it; stopping\""
	if out := logs.String(); !strings.Contains(out, want) {
		t.Fatalf("the log lacks %s:\n%s", want, out)
	}
	if s.srv.Node().FSM().State().JobCount() != 2 {
		t.Fatalf("%d jobs, want 2", s.srv.Node().FSM().State().JobCount())
	}
}
