package client

import (
	"errors"
	"net"
	"net/http"
	"testing"
)

func TestRetryOnlyWhatCannotApplyTwice(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	broken := &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}
	cases := []struct {
		err        error
		idempotent bool
		want       bool
	}{
		{&StatusError{Code: 503}, false, true},  // not applied: no leader
		{&StatusError{Code: 504}, false, false}, // outcome unknown: a create could be made twice
		{&StatusError{Code: 504}, true, true},
		{&StatusError{Code: 502}, false, false},
		{&StatusError{Code: 400}, true, false},
		{&StatusError{Code: 409}, true, false},
		{dial, false, true}, // nothing was sent
		{broken, false, false},
		{broken, true, true},
	}
	for _, c := range cases {
		if got := retryable(c.err, c.idempotent); got != c.want {
			t.Errorf("retryable(%v, idempotent=%v) = %v, want %v", c.err, c.idempotent, got, c.want)
		}
	}
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{http.MethodGet, "/api/jobs", true},
		{http.MethodPut, "/api/jobs", false},
		{http.MethodPost, "/api/resetjobs", false},
		{http.MethodPost, PathReport, true},
		{http.MethodPost, "/cluster/join", true},
	} {
		if got := idempotent(c.method, c.path); got != c.want {
			t.Errorf("idempotent(%s %s) = %v", c.method, c.path, got)
		}
	}
}
