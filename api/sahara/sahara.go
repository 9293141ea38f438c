// Package sahara serves the OpenStack Sahara EDP API v1.1 under
// /v1.1/{tenant_id}/ over the farm's templates and executions: a Sahara
// job is a core template of that project (Spec.Type the Sahara type), a
// job execution a core execution run on a pool of hosts (a Sahara
// cluster), a job binary a template the farm cannot run that holds its
// script or path (docs/api/sahara.md).
package sahara

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/ids"
	"github.com/croftfarm/croft/api/jsonbody"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Prefix is the dialect's subtree; the tenant_id segment is the project.
const Prefix = "/v1.1/:project"

// Limits of the dialect's input (413, or 400, past them).
const (
	// MaxBody bounds a JSON request body.
	MaxBody = 64 << 10
	// MaxBinaryBytes bounds a job-binary-internal's script: it becomes a
	// template's main (raftstore.MaxMainBytes).
	MaxBinaryBytes = raftstore.MaxMainBytes
	// MaxNameChars bounds a job's or binary's name (Sahara's schema).
	MaxNameChars = 50
	// MaxDescriptionBytes bounds a description.
	MaxDescriptionBytes = 4 << 10
	// MaxURLBytes bounds a job binary's url.
	MaxURLBytes = 1 << 10
	// MaxRefs bounds a job's mains and libs, each.
	MaxRefs = 32
	// MaxLimit bounds a list's limit; a larger one is that.
	MaxLimit = 1_000
	// MaxFilters bounds a list's column filters.
	MaxFilters = 16
	// MaxQueryValueBytes bounds a query parameter's value.
	MaxQueryValueBytes = 1 << 10
	// MaxJSONDepth bounds how deep a body's JSON nests.
	MaxJSONDepth = 32
)

// Store is the farm's replicated state.
type Store interface {
	State() *raftstore.State
}

// Ops are the farm operations the dialect uses (the service layer's).
type Ops interface {
	CreateTemplate(ctx context.Context, project string, spec raftstore.TemplateSpec) (raftstore.Template, error)
	UpdateTemplateIf(ctx context.Context, id string, ifRevision int64, patch raftstore.TemplatePatch) (raftstore.Template, error)
	DeleteTemplate(ctx context.Context, id string) error
	Execute(ctx context.Context, req service.ExecuteRequest) (raftstore.ExecutionStatus, error)
	CancelExecution(ctx context.Context, id string) error
	DeleteExecution(ctx context.Context, id string) error
	WriteExecutionDoc(ctx context.Context, id string, ifRevision int64, doc []byte) error
}

// Config is the dialect's configuration, the same on every coordinator.
type Config struct {
	// JobTypes maps a Sahara job type to the farm command template
	// (farm.ExpandCommand) its executions run, e.g. "Spark":
	// "spark-submit {main} {args}". Shell needs none (ShellCommand and
	// ShellFileCommand); a type with none is refused at execute.
	JobTypes map[string]string
}

// Handler serves the dialect.
type Handler struct {
	store Store
	ops   Ops
	cfg   Config
}

// New returns the dialect's handler.
func New(store Store, ops Ops, cfg Config) *Handler {
	return &Handler{store: store, ops: ops, cfg: cfg}
}

// Register mounts the routes, each also with Sahara's ".json" suffix
// (for a route ending in an id, the handler strips the suffix).
func (h *Handler) Register(m auth.Mount) {
	m.Abort = Abort
	both := func(method, path string, perm auth.Perm, fn gin.HandlerFunc) {
		m.Handle(method, Prefix+path, perm, fn)
		m.Handle(method, Prefix+path+".json", perm, fn)
	}
	one := func(method, path string, perm auth.Perm, fn gin.HandlerFunc) {
		m.Handle(method, Prefix+path, perm, fn)
	}
	both(http.MethodGet, "/jobs", auth.PermRead, h.listJobs)
	both(http.MethodPost, "/jobs", auth.PermWrite, h.createJob)
	one(http.MethodGet, "/jobs/:id", auth.PermRead, h.showJob)
	one(http.MethodPatch, "/jobs/:id", auth.PermWrite, h.updateJob)
	one(http.MethodDelete, "/jobs/:id", auth.PermWrite, h.deleteJob)
	both(http.MethodPost, "/jobs/:id/execute", auth.PermWrite, h.execute)
	one(http.MethodGet, "/jobs/config-hints/:type", auth.PermRead, h.configHints)
	both(http.MethodGet, "/job-types", auth.PermRead, h.listJobTypes)

	both(http.MethodGet, "/job-executions", auth.PermRead, h.listExecutions)
	one(http.MethodGet, "/job-executions/:id", auth.PermRead, h.showExecution)
	one(http.MethodPatch, "/job-executions/:id", auth.PermWrite, h.updateExecution)
	one(http.MethodDelete, "/job-executions/:id", auth.PermWrite, h.deleteExecution)
	both(http.MethodGet, "/job-executions/:id/refresh-status", auth.PermRead, h.showExecution)
	both(http.MethodGet, "/job-executions/:id/cancel", auth.PermWrite, h.cancelExecution)

	both(http.MethodGet, "/job-binary-internals", auth.PermRead, h.listInternals)
	one(http.MethodPut, "/job-binary-internals/:name", auth.PermWrite, h.createInternal)
	one(http.MethodGet, "/job-binary-internals/:name", auth.PermRead, h.showInternal)
	one(http.MethodDelete, "/job-binary-internals/:name", auth.PermWrite, h.deleteInternal)
	both(http.MethodGet, "/job-binary-internals/:name/data", auth.PermRead, h.internalData)
	both(http.MethodGet, "/job-binaries", auth.PermRead, h.listBinaries)
	both(http.MethodPost, "/job-binaries", auth.PermWrite, h.createBinary)
	one(http.MethodGet, "/job-binaries/:id", auth.PermRead, h.showBinary)
	one(http.MethodDelete, "/job-binaries/:id", auth.PermWrite, h.deleteBinary)

	both(http.MethodGet, "/clusters", auth.PermRead, h.listClusters)
	one(http.MethodGet, "/clusters/:id", auth.PermRead, h.showCluster)
}

// Error is an answer in Sahara's words: an HTTP status and an
// error_name (INVALID_DATA, DELETION_FAILED, ...).
type Error struct {
	Status int
	Name   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func saharaErr(status int, name, format string, args ...any) error {
	return &Error{Status: status, Name: name, Msg: fmt.Sprintf(format, args...)}
}

// invalidData is Sahara's InvalidDataException (400 INVALID_DATA).
func invalidData(format string, args ...any) error {
	return saharaErr(http.StatusBadRequest, "INVALID_DATA", format, args...)
}

// invalidRef is Sahara's InvalidReferenceException.
func invalidRef(format string, args ...any) error {
	return saharaErr(http.StatusBadRequest, "INVALID_REFERENCE", format, args...)
}

// notFound is Sahara's NotFoundException for an object id.
func notFound(id string) error {
	return saharaErr(http.StatusNotFound, "NOT_FOUND", "Object with {'id': '%s'} not found", apierr.Truncate(id, 64))
}

// names of the statuses apierr's table chooses, as Sahara names them.
var names = map[int]string{
	http.StatusBadRequest:            "VALIDATION_ERROR",
	http.StatusUnauthorized:          "UNAUTHORIZED",
	http.StatusForbidden:             "FORBIDDEN",
	http.StatusNotFound:              "NOT_FOUND",
	http.StatusConflict:              "CONFLICT",
	http.StatusRequestEntityTooLarge: "REQUEST_ENTITY_TOO_LARGE",
	http.StatusServiceUnavailable:    "SERVICE_UNAVAILABLE",
}

// Abort answers an error as Sahara does: {"error_code", "error_message",
// "error_name"} with the same status; the message ends with an Error ID.
func Abort(c *gin.Context, err error) {
	status, name := apierr.Status(err), ""
	var se *Error
	if errors.As(err, &se) {
		status, name = se.Status, se.Name
	}
	if name == "" {
		name = names[status]
		if name == "" {
			name = "INTERNAL_SERVER_ERROR"
		}
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Keystone uri="croft"`)
	}
	c.AbortWithStatusJSON(status, gin.H{"error_code": status, "error_name": name,
		"error_message": err.Error() + "\nError ID: " + errorID()})
}

// project returns the path's tenant_id if the token may read it (write,
// when write is set); else it answers 403.
func project(c *gin.Context, write bool) (string, bool) {
	pid := c.Param("project")
	p := auth.From(c)
	if !p.CanRead(pid) || write && !p.CanWrite(pid) {
		Abort(c, apierr.Forbidden("token %q may not %s tenant %q", p.Name, map[bool]string{false: "read", true: "change"}[write], apierr.Truncate(pid, 64)))
		return "", false
	}
	return pid, true
}

// errorID is the "Error ID" of an error answer, a UUID as Sahara's.
func errorID() string {
	id, _ := service.NewID() // none if the RNG failed: the answer goes out all the same
	return ids.Dashed(id)
}

// param is a path parameter without Sahara's ".json" suffix.
func param(c *gin.Context, name string) string {
	return strings.TrimSuffix(c.Param(name), ".json")
}

// coreID is the core id a Sahara id names: a dashed UUID (or 32 hex
// digits), lower-cased; false when it is neither.
func coreID(id string) (string, bool) {
	if len(id) == 36 {
		return ids.Undashed(id)
	}
	return ids.Hex(id)
}

// Times: templates show "YYYY-MM-DD HH:MM:SS", executions
// "YYYY-MM-DDTHH:MM:SS" (UTC), as Sahara's samples do; 0 is null.
const (
	templateTime  = "2006-01-02 15:04:05"
	executionTime = "2006-01-02T15:04:05"
)

func timeOf(ns int64, layout string) any {
	if ns == 0 {
		return nil
	}
	return time.Unix(0, ns).UTC().Format(layout)
}

// readJSON reads a bounded JSON object body into a map, refusing
// duplicate-free garbage: not JSON, not an object, too deep, NUL bytes.
func readJSON(c *gin.Context) (map[string]any, error) {
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, saharaErr(http.StatusBadRequest, "MALFORMED_REQUEST_BODY", "Malformed message body: empty body")
	}
	if jsonbody.Depth(body) > MaxJSONDepth {
		return nil, saharaErr(http.StatusBadRequest, "MALFORMED_REQUEST_BODY", "Malformed message body: nested deeper than %d", MaxJSONDepth)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, saharaErr(http.StatusBadRequest, "MALFORMED_REQUEST_BODY", "Malformed message body: a JSON object expected")
	}
	if jsonbody.HasNUL(m) {
		return nil, validation("NUL bytes are not allowed")
	}
	return m, nil
}

// validation is Sahara's schema violation (400 VALIDATION_ERROR).
func validation(format string, args ...any) error {
	return saharaErr(http.StatusBadRequest, "VALIDATION_ERROR", format, args...)
}

// onlyKeys refuses a key outside allowed (additionalProperties: false).
func onlyKeys(m map[string]any, allowed ...string) error {
	for k := range m {
		found := false
		for _, a := range allowed {
			found = found || k == a
		}
		if !found {
			return validation("Additional properties are not allowed ('%s' was unexpected)", apierr.Truncate(k, 64))
		}
	}
	return nil
}

// optString reads an optional string field (null is ""), of at most n bytes.
func optString(m map[string]any, k string, n int) (string, error) {
	v, ok := m[k]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", validation("%s: a string expected", k)
	}
	if len(s) > n {
		return "", validation("%s: longer than %d bytes", k, n)
	}
	return s, nil
}

// optBool reads an optional boolean field (null: absent).
func optBool(m map[string]any, k string) (*bool, error) {
	v, ok := m[k]
	if !ok || v == nil {
		return nil, nil
	}
	b, ok := v.(bool)
	if !ok {
		return nil, validation("%s: a boolean expected", k)
	}
	return &b, nil
}

// checkName checks a Sahara name: 1..MaxNameChars characters, one line.
func checkName(k, s string) error {
	if n := len([]rune(s)); n == 0 || n > MaxNameChars {
		return validation("%s: 1 to %d characters expected", k, MaxNameChars)
	}
	if strings.ContainsAny(s, "\r\n") || strings.TrimSpace(s) == "" {
		return validation("%s: '%s' is not a valid name", k, apierr.Truncate(s, 64))
	}
	return nil
}
