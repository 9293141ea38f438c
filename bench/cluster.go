package bench

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/localcluster"
)

// SnapshotReply is the reply of POST /cluster/snapshot.
type SnapshotReply struct {
	Index  uint64  `json:"index"`
	Bytes  int64   `json:"bytes"`
	TookMS float64 `json:"took_ms"`
}

func runScale(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	total := r.cfg.ScaleJobs
	for left := total; left > 0; {
		n := min(left, 100_000)
		if _, err := group(ctx, c, "scale", "true", n, true); err != nil {
			return nil, err
		}
		left -= n
		r.logf("scale: %d of %d jobs created", total-left, total)
	}
	leader, err := r.cluster.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var out []Result
	var worst int64
	for _, co := range r.cluster.Coords {
		if _, rss, err := localcluster.ProcStats(co.Pid()); err == nil && rss > worst {
			worst = rss
		}
	}
	res := atMost("scale", "coordinator RSS (largest)", float64(worst)/(1<<30), "GiB", 1.5)
	res.Note = fmt.Sprintf("%d jobs in state", total)
	out = append(out, res)

	var snap SnapshotReply
	if err := r.client(leader.URL).Do(ctx, http.MethodPost, "/cluster/snapshot", nil, &snap); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	out = append(out, atMost("scale", "snapshot time", snap.TookMS/1000, "s", 10),
		plain("scale", "snapshot size", float64(snap.Bytes)/(1<<20), "MiB"))

	// Restart a follower from its data dir: restore its snapshot (if it has
	// one), replay its log, catch up: until its state machine has applied
	// everything the leader's had when the follower was killed.
	var follower *localcluster.Coordinator
	for _, co := range r.cluster.Coords {
		if co != leader {
			follower = co
			break
		}
	}
	st, err := c.Status(ctx, leader.URL)
	if err != nil {
		return nil, err
	}
	follower.Kill()
	t0 := time.Now()
	if err := r.cluster.Restart(ctx, follower); err != nil {
		return nil, err
	}
	fc := r.client(follower.URL)
	for {
		fs, err := fc.Status(ctx, follower.URL)
		if err == nil && fs.FSMIndex >= st.FSMIndex {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("restarted follower did not catch up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	out = append(out, atMost("scale", "restart to caught up", time.Since(t0).Seconds(), "s", 10))
	return out, nil
}

func runFailover(ctx context.Context, r *runner) ([]Result, error) {
	var took []time.Duration
	for k := 0; k < r.cfg.FailoverKills; k++ {
		leader, err := r.cluster.Leader(ctx)
		if err != nil {
			return nil, err
		}
		var rest []string
		for _, co := range r.cluster.Coords {
			if co != leader {
				rest = append(rest, co.URL)
			}
		}
		probe := r.client(rest...)
		t0 := time.Now()
		leader.Kill()
		for {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := probe.CreateJob(pctx, client.NewJob{Title: "failover probe", Command: "true", State: "PAUSED"})
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		took = append(took, time.Since(t0))
		r.logf("failover %d: %v", k+1, took[len(took)-1])
		if err := r.cluster.Restart(ctx, leader); err != nil {
			return nil, err
		}
		if err := r.cluster.WaitMembers(ctx, len(r.cluster.Coords)); err != nil {
			return nil, err
		}
		// The restarted node catches up before the next kill, so every kill
		// leaves a full quorum of up-to-date members.
		if err := r.caughtUp(ctx, leader); err != nil {
			return nil, err
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	med := took[len(took)/2]
	if len(took)%2 == 0 {
		med = (took[len(took)/2-1] + took[len(took)/2]) / 2
	}
	m := atMost("failover", "kill -9 leader to first ack, median", med.Seconds(), "s", 1)
	m.Note = fmt.Sprintf("%d kills", len(took))
	return []Result{m, atMost("failover", "kill -9 leader to first ack, worst", took[len(took)-1].Seconds(), "s", 2)}, nil
}

// caughtUp waits until co has applied everything its leader had applied
// when it was asked.
func (r *runner) caughtUp(ctx context.Context, co *localcluster.Coordinator) error {
	return r.allCaughtUp(ctx, []string{co.URL})
}
