//go:build !unix

package coordinator

// fileLimit reports no open-file limit: this system has no RLIMIT_NOFILE.
func fileLimit() (soft, hard uint64, err error) { return 0, 0, nil }
