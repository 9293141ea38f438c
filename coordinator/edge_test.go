package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
)

// TestEdgeErrorStatuses checks that every sentinel of the Raft layer gets
// its status through the one table (apierr.Status), with the message kept
// and the cause still visible to errors.Is.
func TestEdgeErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: n2 is not the leader", cluster.ErrNotLeader), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: no leader known after 5s", cluster.ErrNoLeader), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w: leadership lost", cluster.ErrOutcomeUnknown, cluster.ErrNotLeader), http.StatusGatewayTimeout},
		{fmt.Errorf("%w: %w", cluster.ErrOutcomeUnknown, context.Canceled), http.StatusGatewayTimeout},
		{fmt.Errorf("node s1: %w: no space left on device", cluster.ErrStorage), http.StatusInsufficientStorage},
		{fmt.Errorf("%w (%w)", fmt.Errorf("node s1: %w", cluster.ErrStorage), cluster.ErrNotLeader), http.StatusInsufficientStorage},
		{fmt.Errorf("%w: nothing new", cluster.ErrSnapshotRefused), http.StatusConflict},
		{fmt.Errorf("%w: node n4: %w", raftstore.ErrInvalid, cluster.ErrPeerUnverified), http.StatusBadRequest},
		{fmt.Errorf("%w: node nope", raftstore.ErrNotFound), http.StatusNotFound},
		{errors.New("snapshot: open failed"), http.StatusInternalServerError},
	} {
		got := edgeError(tc.err)
		if s := apierr.Status(got); s != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, s, tc.want)
		}
		if got.Error() != tc.err.Error() || !errors.Is(got, tc.err) {
			t.Errorf("%v: translated to %q, which lost the cause", tc.err, got)
		}
	}
	if edgeError(nil) != nil {
		t.Error("edgeError(nil) is not nil")
	}
}
