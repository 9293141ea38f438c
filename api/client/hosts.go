package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Paths of the hosts and interpreters routes.
const (
	PathHosts        = "/croft/v1/hosts"
	PathInterpreters = "/croft/v1/interpreters"
)

// Host is an agent's host: its slots (each a worker), what the agent
// advertised when a slot last registered, and, from the leader's memory,
// its last measurements.
type Host struct {
	Name string `json:"name"`
	// Slots are its slots' workers, by name.
	Slots []HostSlot `json:"slots"`
	// SlotCount is how many slots the agent says it runs (0: not said).
	SlotCount int `json:"slot_count"`
	CPUs      int `json:"cpus"`
	// TotalMemory is in MiB (0: not measured).
	TotalMemory  int64         `json:"total_memory"`
	Interpreters []Interpreter `json:"interpreters"`
	// Projects its slots serve; ["*"] for the whole farm.
	Projects        []string  `json:"projects"`
	FirstRegistered time.Time `json:"first_registered"`
	LastRegistered  time.Time `json:"last_registered"`
	// Live is the last measurement the leader received from a slot; nil
	// when none reached this leader yet (after a failover).
	Live *HostLive `json:"live,omitempty"`
}

// HostSlot is one slot of a host: a worker.
type HostSlot struct {
	Name   string `json:"name"`
	State  string `json:"state"` // WAITING, WORKING or TIMEOUT
	Active bool   `json:"active"`
	// Job and Attempt are what it runs (0: nothing, or a job of a
	// project the caller may not read).
	Job     int64 `json:"job,omitempty"`
	Attempt int64 `json:"attempt,omitempty"`
}

// HostLive is a host's last measured load.
type HostLive struct {
	Seen time.Time `json:"seen"`
	// CPU is the load of each core, in percent.
	CPU []int `json:"cpu"`
	// FreeMemory is in MiB.
	FreeMemory int64 `json:"free_memory"`
}

// InterpreterInfo is an interpreter of the farm: configured on the
// coordinator, detected on hosts, or both.
type InterpreterInfo struct {
	Name string `json:"name"`
	// Configured is true when an admin configured its template;
	// otherwise it runs with the default template.
	Configured bool   `json:"configured"`
	Template   string `json:"template"`
	// Uses is the detected interpreter it runs with (its own name when
	// not configured).
	Uses    string     `json:"uses"`
	Created *time.Time `json:"created,omitempty"`
	Updated *time.Time `json:"updated,omitempty"`
	// HostCount is how many hosts offer it (detect Uses); Hosts names the
	// first of them, at most MaxListedHosts, in name order.
	HostCount int      `json:"host_count"`
	Hosts     []string `json:"hosts"`
}

// MaxListedHosts bounds InterpreterInfo.Hosts; the full list is
// GET /croft/v1/hosts?interpreter=NAME.
const MaxListedHosts = 1000

// InterpreterRequest configures an interpreter (PUT
// /croft/v1/interpreters/{name}).
type InterpreterRequest struct {
	Template string `json:"template"`
	// Uses names the detected interpreter the template runs ("" means
	// the interpreter's own name).
	Uses string `json:"uses,omitempty"`
}

// Hosts lists the hosts the token may see.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	var out []Host
	err := c.Do(ctx, http.MethodGet, PathHosts, nil, &out)
	return out, err
}

// Host returns one host.
func (c *Client) Host(ctx context.Context, name string) (Host, error) {
	var out Host
	err := c.Do(ctx, http.MethodGet, PathHosts+"/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Interpreters lists the farm's interpreters.
func (c *Client) Interpreters(ctx context.Context) ([]InterpreterInfo, error) {
	var out []InterpreterInfo
	err := c.Do(ctx, http.MethodGet, PathInterpreters, nil, &out)
	return out, err
}

// SetInterpreter configures interpreter name (admins).
func (c *Client) SetInterpreter(ctx context.Context, name string, req InterpreterRequest) error {
	return c.Do(ctx, http.MethodPut, PathInterpreters+"/"+url.PathEscape(name), req, nil)
}

// DeleteInterpreter removes a configured interpreter (admins).
func (c *Client) DeleteInterpreter(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, PathInterpreters+"/"+url.PathEscape(name), nil, nil)
}
