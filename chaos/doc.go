// Package chaos holds Croft's chaos test (chaos_test.go): a three-coordinator
// cluster and three agents run from the built binary while coordinators and
// agents are killed with SIGKILL and restarted, jobs are submitted all along,
// and at the end every acknowledged job must have run exactly once and every
// coordinator must hold the same state. See README.md. The package has no
// code outside its tests.
package chaos
