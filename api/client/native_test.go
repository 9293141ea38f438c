package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestFailFastGivesUpWhenNoCoordinatorListens(t *testing.T) {
	c := NewWith(Options{FailFast: true}, closedURL(t), closedURL(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.GetJob(ctx, 1)
	if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("err %v (ctx %v), want ErrUnavailable before the deadline", err, ctx.Err())
	}
	// Without it, the client retries until its context ends.
	c = New(closedURL(t))
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := c.GetJob(ctx, 1); !errors.Is(err, ErrUnavailable) || ctx.Err() == nil {
		t.Fatalf("err %v, want ErrUnavailable once ctx ended", err)
	}
}

func TestNativeJobCallsPaths(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		switch {
		case r.Method == http.MethodPost && r.URL.Path == PathJobs:
			_, _ = w.Write([]byte(`{"ids":[7]}`))
		case r.URL.Path == PathJobs:
			_, _ = w.Write([]byte(`[]`))
		default:
			_, _ = w.Write([]byte(`{"id":7,"state":"finished","done":true,"created":"2025-03-01T12:00:00Z"}`))
		}
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx := context.Background()
	zero := int64(0)
	if _, err := c.ListJobs(ctx, JobFilter{State: "failed,canceled", Affinity: "gpu", Parent: &zero, Offset: 5, Limit: 10}); err != nil {
		t.Fatal(err)
	}
	ids, err := c.CreateJobs(ctx, JobSpec{Title: "t", Command: "true", Paused: true})
	if err != nil || len(ids) != 1 || ids[0] != 7 {
		t.Fatalf("create: %v %v", ids, err)
	}
	j, err := c.ActOnJob(ctx, 7, "retry")
	if err != nil || !j.Done || j.Created == nil || j.Created.Year() != 2025 {
		t.Fatalf("act: %+v %v", j, err)
	}
	if err := c.SetWorkersActive(ctx, false, "w1", "w1/2"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /croft/v1/jobs?affinity=gpu&limit=10&offset=5&parent=0&state=failed%2Ccanceled ",
		`POST /croft/v1/jobs {"jobs":[{"title":"t","command":"true","paused":true}]}`,
		"POST /croft/v1/jobs/7/retry ",
		`POST /api/stopworkers ["w1","w1/2"]`,
	}
	if len(got) != len(want) {
		t.Fatalf("requests %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], want[i])
		}
	}
}
