package apierr

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/croftfarm/croft/raftstore"
)

// TestStatus checks the one error-to-status table, wrapped errors included.
func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{Unauthenticated("no token"), http.StatusUnauthorized},
		{Forbidden("project"), http.StatusForbidden},
		{fmt.Errorf("%w: big", raftstore.ErrTooLarge), http.StatusRequestEntityTooLarge},
		{fmt.Errorf("%w: disk", ErrInsufficientStorage), http.StatusInsufficientStorage},
		{Bad("field"), http.StatusBadRequest},
		{fmt.Errorf("x: %w", raftstore.ErrInvalid), http.StatusBadRequest},
		{NotFound("job 1"), http.StatusNotFound},
		{raftstore.ErrStaleAttempt, http.StatusConflict},
		{fmt.Errorf("%w: busy", ErrConflict), http.StatusConflict},
		{fmt.Errorf("%w: session x is at revision 3, not 2", raftstore.ErrConflict), http.StatusConflict},
		{fmt.Errorf("%w: forward: EOF", ErrBadGateway), http.StatusBadGateway},
		{fmt.Errorf("%w: %w", ErrOutcomeUnknown, context.Canceled), http.StatusGatewayTimeout},
		{fmt.Errorf("%w: no leader", ErrUnavailable), http.StatusServiceUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable},
		{context.Canceled, 499},
		{fmt.Errorf("boom"), http.StatusInternalServerError},
	} {
		if got := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
