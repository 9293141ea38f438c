package coordinator

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/coalition"
	"github.com/croftfarm/croft/api/native"
	"github.com/croftfarm/croft/raftstore"
)

// secureServer is a coordinator with access control on, its bootstrap
// admin token, projects a and b, a token per role and a job in each
// project.
type secureServer struct {
	*serverTest
	secrets map[string]string // token name -> secret
	jobA    int64             // in project a
	jobB    int64             // in project b
	sessA   string            // a group session in project a
	sessB   string            // in project b
}

func startSecure(t *testing.T) *secureServer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "admin.token")
	var made client.Token
	got := make(chan struct{})
	st := startServerWith(t, ServerConfig{WorkerTTL: time.Hour, Pprof: true, BootstrapToken: true, AdminTokenFile: file,
		OnAdminToken: func(t client.Token) { made = t; close(got) }})
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no bootstrap admin token")
	}
	b, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(b)) != made.Secret || made.Role != raftstore.RoleAdmin {
		t.Fatalf("admin token file %q (%v), token %+v", b, err, made)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file mode %v", fi.Mode())
	}
	s := &secureServer{serverTest: st, secrets: map[string]string{"admin": made.Secret}}
	admin := s.as("admin")
	ctx := st.ctx(t)
	for _, p := range []string{"a", "b"} {
		if err := admin.Do(ctx, http.MethodPost, client.PathProjects, client.ProjectRequest{Name: p}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range []client.TokenRequest{
		{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
		{Name: "user-all", Role: raftstore.RoleUser, Projects: []string{"*"}},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "agent-w1", Role: raftstore.RoleAgent, Projects: []string{"*"}, Workers: []string{"w1"}},
	} {
		var tok client.Token
		if err := admin.Do(ctx, http.MethodPost, client.PathTokens, req, &tok); err != nil || tok.Secret == "" {
			t.Fatalf("create token %s: %+v %v", req.Name, tok, err)
		}
		s.secrets[req.Name] = tok.Secret
	}
	if s.jobA, err = s.as("user-a").CreateJob(ctx, client.NewJob{Title: "in a", Command: "true", Project: "a", State: "PAUSED"}); err != nil {
		t.Fatal(err)
	}
	if s.jobB, err = admin.CreateJob(ctx, client.NewJob{Title: "in b", Command: "true", Project: "b", State: "PAUSED"}); err != nil {
		t.Fatal(err)
	}
	if err := s.as("agent-w1").Register(ctx, client.RegisterRequest{Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		token, project string
		id             *string
	}{{"user-a", "a", &s.sessA}, {"admin", "b", &s.sessB}} {
		var out native.Session
		if err := s.as(x.token).Do(ctx, http.MethodPost, native.PathSessions, native.SessionRequest{Kind: raftstore.SessionGroup, Project: x.project}, &out); err != nil || out.ID == "" {
			t.Fatalf("open a session in %s: %+v %v", x.project, out, err)
		}
		*x.id = out.ID
	}
	return s
}

// as is a client with the named token ("" for none).
func (s *secureServer) as(name string) *client.Client {
	return client.NewWith(client.Options{Token: s.secrets[name]}, s.url)
}

// raw sends one request with the named token and returns its status.
func (s *secureServer) raw(t *testing.T, token, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+s.secrets[token])
	}
	if strings.HasPrefix(path, "/workers/") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// routeCase says how to call a route: the path and body a token with the
// right gets (with {a} for a job of project a, {x} for no job), and, for
// routes about one job, the path and body aimed at project b's job, which
// user-a may not touch.
type routeCase struct {
	perm                 auth.Perm // the rule the route must have
	path, body           string
	otherPath, otherBody string
}

// routeCases has one entry per route of the server, by "METHOD path" as
// mounted (Coalition's services are under their table's paths), with the
// rule it must have. A route without an entry, or with another rule,
// fails TestEveryRouteHasARule: a new route comes with its access test, and
// a rule is not loosened by accident.
var routeCases = map[string]routeCase{
	"GET /cluster/status":               {perm: auth.PermAuthenticated, path: "/cluster/status"},
	"GET " + PathMetrics:                {perm: auth.PermRead, path: PathMetrics},
	"POST /cluster/snapshot":            {perm: auth.PermAdmin, path: "/cluster/snapshot"},
	"POST /cluster/join":                {perm: auth.PermAdmin, path: "/cluster/join", body: `{}`},
	"POST /cluster/remove":              {perm: auth.PermAdmin, path: "/cluster/remove", body: `{"node_id":"nobody"}`},
	"GET " + client.PathWhoami:          {perm: auth.PermAuthenticated, path: client.PathWhoami},
	"ANY /debug/pprof/*any":             {perm: auth.PermAdmin, path: "/debug/pprof/cmdline"},
	"POST " + client.PathTokens:         {perm: auth.PermAdmin, path: client.PathTokens, body: `{"name":"made-in-test","role":"read"}`},
	"GET " + client.PathTokens:          {perm: auth.PermAdmin, path: client.PathTokens},
	"DELETE " + client.PathTokens:       {perm: auth.PermAdmin, path: client.PathTokens + "/no-such-token"},
	"POST " + client.PathProjects:       {perm: auth.PermAdmin, path: client.PathProjects, body: `{"name":"made-in-test"}`},
	"GET " + client.PathProjects:        {perm: auth.PermRead, path: client.PathProjects},
	"DELETE " + client.PathProjects:     {perm: auth.PermAdmin, path: client.PathProjects + "/no-such-project"},
	"GET " + client.PathHosts:           {perm: auth.PermRead, path: client.PathHosts},
	"GET /croft/v1/hosts/*host":         {perm: auth.PermRead, path: client.PathHosts + "/w1"},
	"GET " + client.PathInterpreters:    {perm: auth.PermRead, path: client.PathInterpreters},
	"PUT " + client.PathInterpreters:    {perm: auth.PermAdmin, path: client.PathInterpreters + "/made-in-test", body: `{"template":"{interpreter} {file}"}`},
	"DELETE " + client.PathInterpreters: {perm: auth.PermAdmin, path: client.PathInterpreters + "/no-such-interpreter"},
	"POST " + client.PathRegister:       {perm: auth.PermAgent, path: client.PathRegister, body: `{"name":"w1"}`, otherBody: `{"name":"w2"}`},
	"POST " + client.PathHeartbeat:      {perm: auth.PermAgent, path: client.PathHeartbeat, body: `{"name":"w1"}`, otherBody: `{"name":"w2"}`},
	"POST " + client.PathPull:           {perm: auth.PermAgent, path: client.PathPull, body: `{"name":"w1","wait_ms":0}`, otherBody: `{"name":"w2"}`},
	"POST " + client.PathReport:         {perm: auth.PermAgent, path: client.PathReport, body: `{"name":"w1","attempt_id":99999}`, otherBody: `{"name":"w2","attempt_id":1}`},
	"ANY /workers/*path":                {perm: auth.PermAgent, path: "/workers/pickjob", body: "hostname=w1", otherBody: "hostname=w2"},
	"GET jobs":                          {perm: auth.PermRead, path: "/api/jobs"},
	"PUT jobs":                          {perm: auth.PermWrite, path: "/api/jobs", body: `{"title":"t","project":"a","state":"PAUSED"}`, otherBody: `{"title":"t","project":"b"}`},
	"POST jobs":                         {perm: auth.PermWrite, path: "/api/jobs", body: `{"{a}":{"title":"renamed"}}`, otherBody: `{"{b}":{"title":"renamed"}}`},
	"DELETE jobs":                       {perm: auth.PermWrite, path: "/api/jobs", body: `[{x}]`, otherBody: `[{b}]`},
	"GET jobs/where":                    {perm: auth.PermRead, path: "/api/jobs/where/?where_clause=1"},
	"GET jobs/count/where":              {perm: auth.PermRead, path: "/api/jobs/count/where/?where_clause=1"},
	"GET jobs/:filter":                  {perm: auth.PermRead, path: "/api/jobs/users/"},
	"GET jobs/:id":                      {perm: auth.PermRead, path: "/api/jobs/{a}", otherPath: "/api/jobs/{b}"},
	"GET jobs/:id/children":             {perm: auth.PermRead, path: "/api/jobs/{a}/children", otherPath: "/api/jobs/{b}/children"},
	"GET jobs/:id/dependencies":         {perm: auth.PermRead, path: "/api/jobs/{a}/dependencies", otherPath: "/api/jobs/{b}/dependencies"},
	"POST jobs/:id/dependencies":        {perm: auth.PermWrite, path: "/api/jobs/{a}/dependencies", body: `[]`, otherPath: "/api/jobs/{b}/dependencies", otherBody: `[]`},
	"GET jobs/:id/childrendependencies": {perm: auth.PermRead, path: "/api/jobs/{a}/childrendependencies", otherPath: "/api/jobs/{b}/childrendependencies"},
	"GET jobs/:id/log":                  {perm: auth.PermRead, path: "/api/jobs/{a}/log", otherPath: "/api/jobs/{b}/log"},
	"GET " + native.PathJobLog:          {perm: auth.PermRead, path: "/croft/v1/jobs/{a}/log", otherPath: "/croft/v1/jobs/{b}/log"},
	"POST resetjobs":                    {perm: auth.PermWrite, path: "/api/resetjobs", body: `[{x}]`, otherBody: `[{b}]`},
	"POST reseterrorjobs":               {perm: auth.PermWrite, path: "/api/reseterrorjobs", body: `[{x}]`, otherBody: `[{b}]`},
	"POST startjobs":                    {perm: auth.PermWrite, path: "/api/startjobs", body: `[{x}]`, otherBody: `[{b}]`},
	"POST pausejobs":                    {perm: auth.PermWrite, path: "/api/pausejobs", body: `[{a}]`, otherBody: `[{b}]`},
	"GET workers":                       {perm: auth.PermRead, path: "/api/workers"},
	"POST workers":                      {perm: auth.PermAdmin, path: "/api/workers", body: `{"nobody":{"active":1}}`},
	"DELETE workers":                    {perm: auth.PermAdmin, path: "/api/workers", body: `["nobody"]`},
	"POST startworkers":                 {perm: auth.PermAdmin, path: "/api/startworkers", body: `["nobody"]`},
	"POST stopworkers":                  {perm: auth.PermAdmin, path: "/api/stopworkers", body: `["nobody"]`},
	"POST /croft/v1/workers/drain":      {perm: auth.PermAdmin, path: "/croft/v1/workers/drain", body: `{"names":["nobody"]}`},
	"GET events":                        {perm: auth.PermRead, path: "/api/events?howlong=60"},
	"GET affinities":                    {perm: auth.PermRead, path: "/api/affinities"},
	"POST affinities":                   {perm: auth.PermAdmin, path: "/api/affinities", body: `{"2":"test"}`},
	"GET addjob":                        {perm: auth.PermWrite, path: "/xmlrpc/addjob?title=t&state=PAUSED&project=a", otherPath: "/xmlrpc/addjob?title=t&project=b"},
	"POST addjob":                       {perm: auth.PermWrite, path: "/xmlrpc/addjob?title=t&state=PAUSED&project=a", otherPath: "/xmlrpc/addjob?title=t&project=b"},
	"GET /croft/v1/jobs/:id/runs":       {perm: auth.PermRead, path: "/croft/v1/jobs/{a}/runs", otherPath: "/croft/v1/jobs/{b}/runs"},

	// Croft's neutral job routes (api/native/jobs.go).
	"GET " + native.PathJobs:                   {perm: auth.PermRead, path: native.PathJobs + "?project=a", otherPath: native.PathJobs + "?project=b"},
	"POST " + native.PathJobs:                  {perm: auth.PermWrite, path: native.PathJobs, body: `{"title":"t","project":"a","paused":true}`, otherBody: `{"title":"t","project":"b"}`},
	"GET " + native.PathJobs + "/:id":          {perm: auth.PermRead, path: native.PathJobs + "/{a}", otherPath: native.PathJobs + "/{b}"},
	"PATCH " + native.PathJobs:                 {perm: auth.PermWrite, path: native.PathJobs + "/{a}", body: `{"title":"renamed"}`, otherPath: native.PathJobs + "/{b}", otherBody: `{"title":"renamed"}`},
	"DELETE " + native.PathJobs:                {perm: auth.PermWrite, path: native.PathJobs + "/{x}", otherPath: native.PathJobs + "/{b}"},
	"POST " + native.PathJobs + "/:id/:action": {perm: auth.PermWrite, path: native.PathJobs + "/{a}/pause", otherPath: native.PathJobs + "/{b}/pause"},

	// Templates and executions by id: project checks in api/native's tests.
	"POST " + client.PathTemplates: {perm: auth.PermWrite, path: client.PathTemplates,
		body: `{"name":"made-in-test","type":"Shell","project":"a"}`, otherBody: `{"name":"made-in-test","type":"Shell","project":"b"}`},
	"GET " + client.PathTemplates:                          {perm: auth.PermRead, path: client.PathTemplates},
	"GET " + client.PathTemplates + "/:template":           {perm: auth.PermRead, path: client.PathTemplates + "/nope"},
	"PATCH " + client.PathTemplates + "/:template":         {perm: auth.PermWrite, path: client.PathTemplates + "/nope", body: `{}`},
	"DELETE " + client.PathTemplates + "/:template":        {perm: auth.PermWrite, path: client.PathTemplates + "/nope"},
	"POST " + client.PathTemplates + "/:template/execute":  {perm: auth.PermWrite, path: client.PathTemplates + "/nope/execute", body: `{}`},
	"GET " + client.PathExecutions:                         {perm: auth.PermRead, path: client.PathExecutions},
	"GET " + client.PathExecutions + "/:execution":         {perm: auth.PermRead, path: client.PathExecutions + "/nope"},
	"DELETE " + client.PathExecutions + "/:execution":      {perm: auth.PermWrite, path: client.PathExecutions + "/nope"},
	"POST " + client.PathExecutions + "/:execution/cancel": {perm: auth.PermWrite, path: client.PathExecutions + "/nope/cancel"},
}

// The session routes' cases ({sa}, {sb}: a session of project a, b).
func init() {
	for k, c := range map[string]routeCase{
		"POST /croft/v1/sessions":                {perm: auth.PermWrite, path: "/croft/v1/sessions", body: `{"kind":"group","project":"a"}`, otherBody: `{"kind":"group","project":"b"}`},
		"GET /croft/v1/sessions":                 {perm: auth.PermRead, path: "/croft/v1/sessions?project=a"},
		"GET /croft/v1/sessions/:session":        {perm: auth.PermRead, path: "/croft/v1/sessions/{sa}", otherPath: "/croft/v1/sessions/{sb}"},
		"PATCH /croft/v1/sessions/:session":      {perm: auth.PermWrite, path: "/croft/v1/sessions/{sa}", body: `{"name":"n"}`, otherPath: "/croft/v1/sessions/{sb}", otherBody: `{"name":"n"}`},
		"DELETE /croft/v1/sessions/:session":     {perm: auth.PermWrite, path: "/croft/v1/sessions/{sa}", otherPath: "/croft/v1/sessions/{sb}"},
		"POST /croft/v1/sessions/:session/close": {perm: auth.PermWrite, path: "/croft/v1/sessions/{sa}/close", otherPath: "/croft/v1/sessions/{sb}/close"},
		"POST /croft/v1/sessions/:session/start": {perm: auth.PermWrite, path: "/croft/v1/sessions/{sa}/start", otherPath: "/croft/v1/sessions/{sb}/start"},
		"POST /croft/v1/sessions/:session/jobs":  {perm: auth.PermWrite, path: "/croft/v1/sessions/{sa}/jobs", body: `{"code":"true"}`, otherPath: "/croft/v1/sessions/{sb}/jobs", otherBody: `{"code":"true"}`},
		"GET /croft/v1/sessions/:session/jobs":   {perm: auth.PermRead, path: "/croft/v1/sessions/{sa}/jobs", otherPath: "/croft/v1/sessions/{sb}/jobs"},
	} {
		routeCases[k] = c
	}
}

// The Jupyter session routes' cases ({ua}, {ub}: the sessions of project
// a, b as dashed UUIDs). They are schedule groups, not kernels: 404 to
// who may see them, 403 to anyone else, as the rule test wants.
func init() {
	for k, c := range map[string]routeCase{
		"GET /api/sessions":                {perm: auth.PermRead, path: "/api/sessions"},
		"POST /api/sessions":               {perm: auth.PermWrite, path: "/api/sessions", body: `{"path":"p","project":"a","kernel":{"name":"none"}}`, otherBody: `{"path":"p","project":"b"}`},
		"GET /api/sessions/:session":       {perm: auth.PermRead, path: "/api/sessions/{ua}", otherPath: "/api/sessions/{ub}"},
		"PATCH /api/sessions/:session":     {perm: auth.PermWrite, path: "/api/sessions/{ua}", body: `{"name":"n"}`, otherPath: "/api/sessions/{ub}", otherBody: `{"name":"n"}`},
		"DELETE /api/sessions/:session":    {perm: auth.PermWrite, path: "/api/sessions/{ua}", otherPath: "/api/sessions/{ub}"},
		"POST /api/sessions/:session/jobs": {perm: auth.PermWrite, path: "/api/sessions/{ua}/jobs", body: `{"code":"true"}`, otherPath: "/api/sessions/{ub}/jobs", otherBody: `{"code":"true"}`},
	} {
		routeCases[k] = c
	}
}

// The Freezer v2 session routes' cases: the project is in the path, so
// the other project's path is the 403 case; {sa}, {sb} are group sessions.
func init() {
	const v2 = "/v2/:project/sessions"
	for k, c := range map[string]routeCase{
		"GET " + v2:                            {perm: auth.PermRead, path: "/v2/a/sessions", otherPath: "/v2/b/sessions"},
		"GET " + v2 + "/":                      {perm: auth.PermRead, path: "/v2/a/sessions/", otherPath: "/v2/b/sessions/"},
		"POST " + v2:                           {perm: auth.PermWrite, path: "/v2/a/sessions", body: `{"schedule":{}}`, otherPath: "/v2/b/sessions", otherBody: `{"schedule":{}}`},
		"POST " + v2 + "/":                     {perm: auth.PermWrite, path: "/v2/a/sessions/", body: `{"schedule":{}}`, otherPath: "/v2/b/sessions/", otherBody: `{"schedule":{}}`},
		"PATCH " + v2:                          {perm: auth.PermWrite, path: "/v2/a/sessions", body: `{"session_id":"{sa}","hold_off":1}`, otherPath: "/v2/b/sessions", otherBody: `{"session_id":"{sb}","hold_off":1}`},
		"PATCH " + v2 + "/":                    {perm: auth.PermWrite, path: "/v2/a/sessions/", body: `{"session_id":"{sa}","hold_off":1}`, otherPath: "/v2/b/sessions/", otherBody: `{"session_id":"{sb}","hold_off":1}`},
		"GET " + v2 + "/:session":              {perm: auth.PermRead, path: "/v2/a/sessions/{sa}", otherPath: "/v2/b/sessions/{sb}"},
		"PATCH " + v2 + "/:session":            {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}", body: `{"hold_off":1}`, otherPath: "/v2/b/sessions/{sb}", otherBody: `{"hold_off":1}`},
		"POST " + v2 + "/:session":             {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}", body: `{"schedule":{}}`, otherPath: "/v2/b/sessions/{sb}", otherBody: `{"schedule":{}}`},
		"PUT " + v2 + "/:session":              {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}", body: `{"schedule":{}}`, otherPath: "/v2/b/sessions/{sb}", otherBody: `{"schedule":{}}`},
		"DELETE " + v2 + "/:session":           {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}", otherPath: "/v2/b/sessions/{sb}"},
		"POST " + v2 + "/:session/action":      {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}/action", body: `{"end":{"job_id":"j"}}`, otherPath: "/v2/b/sessions/{sb}/action", otherBody: `{"end":{"job_id":"j"}}`},
		"POST " + v2 + "/:session/actions":     {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}/actions", body: `{"end":{"job_id":"j"}}`, otherPath: "/v2/b/sessions/{sb}/actions", otherBody: `{"end":{"job_id":"j"}}`},
		"PUT " + v2 + "/:session/jobs/:job":    {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}/jobs/j", otherPath: "/v2/b/sessions/{sb}/jobs/j"},
		"DELETE " + v2 + "/:session/jobs/:job": {perm: auth.PermWrite, path: "/v2/a/sessions/{sa}/jobs/j", otherPath: "/v2/b/sessions/{sb}/jobs/j"},
	} {
		routeCases[k] = c
	}
}

// The Freezer v2 job routes' cases (no job needs to exist: the allowed
// call may be a 404).
func init() {
	const j = "/v2/:project/jobs"
	job := `{"client_id":"h","job_schedule":{},"job_actions":[]}`
	for k, c := range map[string]routeCase{
		"GET " + j:                  {perm: auth.PermRead, path: "/v2/a/jobs", otherPath: "/v2/b/jobs"},
		"GET " + j + "/":            {perm: auth.PermRead, path: "/v2/a/jobs/", otherPath: "/v2/b/jobs/"},
		"POST " + j:                 {perm: auth.PermWrite, path: "/v2/a/jobs", body: job, otherPath: "/v2/b/jobs", otherBody: job},
		"POST " + j + "/":           {perm: auth.PermWrite, path: "/v2/a/jobs/", body: job, otherPath: "/v2/b/jobs/", otherBody: job},
		"GET " + j + "/:job":        {perm: auth.PermRead, path: "/v2/a/jobs/j", otherPath: "/v2/b/jobs/j"},
		"PATCH " + j + "/:job":      {perm: auth.PermWrite, path: "/v2/a/jobs/j", body: `{"description":"d"}`, otherPath: "/v2/b/jobs/j", otherBody: `{"description":"d"}`},
		"POST " + j + "/:job":       {perm: auth.PermWrite, path: "/v2/a/jobs/j", body: job, otherPath: "/v2/b/jobs/j", otherBody: job},
		"PUT " + j + "/:job":        {perm: auth.PermWrite, path: "/v2/a/jobs/j", body: job, otherPath: "/v2/b/jobs/j", otherBody: job},
		"DELETE " + j + "/:job":     {perm: auth.PermWrite, path: "/v2/a/jobs/j", otherPath: "/v2/b/jobs/j"},
		"POST " + j + "/:job/event": {perm: auth.PermWrite, path: "/v2/a/jobs/j/event", body: `{"stop":null}`, otherPath: "/v2/b/jobs/j/event", otherBody: `{"stop":null}`},
	} {
		routeCases[k] = c
	}
}

// The SAS Compute routes' cases ({xa}, {xb}: the sessions of project a,
// b as SAS session ids). They are schedule groups, not compute sessions:
// 404 to who may see them, 403 to anyone else.
func init() {
	const s, j = "/compute/sessions/:session", "/compute/sessions/:session/jobs/:job"
	for k, c := range map[string]routeCase{
		"GET /compute/contexts":                    {perm: auth.PermRead, path: "/compute/contexts"},
		"GET /compute/contexts/:context":           {perm: auth.PermRead, path: "/compute/contexts/nope"},
		"POST /compute/contexts/:context/sessions": {perm: auth.PermWrite, path: "/compute/contexts/nope/sessions?project=a", body: `{}`, otherPath: "/compute/contexts/nope/sessions?project=b", otherBody: `{}`},
		"GET /compute/sessions":                    {perm: auth.PermRead, path: "/compute/sessions"},
		"GET " + s:                                 {perm: auth.PermRead, path: "/compute/sessions/{xa}", otherPath: "/compute/sessions/{xb}"},
		"DELETE " + s:                              {perm: auth.PermWrite, path: "/compute/sessions/{xa}", otherPath: "/compute/sessions/{xb}"},
		"GET " + s + "/state":                      {perm: auth.PermRead, path: "/compute/sessions/{xa}/state", otherPath: "/compute/sessions/{xb}/state"},
		"PUT " + s + "/state":                      {perm: auth.PermWrite, path: "/compute/sessions/{xa}/state?value=canceled", otherPath: "/compute/sessions/{xb}/state?value=canceled"},
		"POST " + s + "/jobs":                      {perm: auth.PermWrite, path: "/compute/sessions/{xa}/jobs", body: `{"code":["true"]}`, otherPath: "/compute/sessions/{xb}/jobs", otherBody: `{"code":["true"]}`},
		"GET " + s + "/jobs":                       {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs", otherPath: "/compute/sessions/{xb}/jobs"},
		"GET " + s + "/log":                        {perm: auth.PermRead, path: "/compute/sessions/{xa}/log", otherPath: "/compute/sessions/{xb}/log"},
		"GET " + s + "/listing":                    {perm: auth.PermRead, path: "/compute/sessions/{xa}/listing", otherPath: "/compute/sessions/{xb}/listing"},
		"GET " + s + "/results":                    {perm: auth.PermRead, path: "/compute/sessions/{xa}/results", otherPath: "/compute/sessions/{xb}/results"},
		"GET " + s + "/filerefs":                   {perm: auth.PermRead, path: "/compute/sessions/{xa}/filerefs", otherPath: "/compute/sessions/{xb}/filerefs"},
		"HEAD " + s + "/data/:libref":              {perm: auth.PermRead, path: "/compute/sessions/{xa}/data/USER", otherPath: "/compute/sessions/{xb}/data/USER"},
		"GET " + j:                                 {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs/1", otherPath: "/compute/sessions/{xb}/jobs/1"},
		"DELETE " + j:                              {perm: auth.PermWrite, path: "/compute/sessions/{xa}/jobs/1", otherPath: "/compute/sessions/{xb}/jobs/1"},
		"GET " + j + "/state":                      {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs/1/state", otherPath: "/compute/sessions/{xb}/jobs/1/state"},
		"PUT " + j + "/state":                      {perm: auth.PermWrite, path: "/compute/sessions/{xa}/jobs/1/state?value=canceled", otherPath: "/compute/sessions/{xb}/jobs/1/state?value=canceled"},
		"GET " + j + "/log":                        {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs/1/log", otherPath: "/compute/sessions/{xb}/jobs/1/log"},
		"GET " + j + "/listing":                    {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs/1/listing", otherPath: "/compute/sessions/{xb}/jobs/1/listing"},
		"GET " + j + "/results":                    {perm: auth.PermRead, path: "/compute/sessions/{xa}/jobs/1/results", otherPath: "/compute/sessions/{xb}/jobs/1/results"},
	} {
		routeCases[k] = c
	}
}

// uuidOf renders a session id as the Jupyter routes take it, 8-4-4-4-12.
func uuidOf(id string) string {
	if len(id) != 32 {
		return id
	}
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

// Who has and who lacks each rule.
var (
	allowedBy = map[auth.Perm]string{
		auth.PermAuthenticated: "agent-w1", auth.PermRead: "read-a", auth.PermWrite: "user-a",
		auth.PermAdmin: "admin", auth.PermAgent: "agent-w1",
	}
	deniedTo = map[auth.Perm]string{
		auth.PermRead: "agent-w1", auth.PermWrite: "read-a", auth.PermAdmin: "user-all", auth.PermAgent: "user-all",
	}
)

// TestEveryRouteHasARule walks every route the server mounted (and every
// service of Coalition's table): without a token it is 401; with a token
// that lacks its rule, 403; aimed at another project's job or another
// worker's name, 403; with the right token, anything but 401 and 403.
func TestEveryRouteHasARule(t *testing.T) {
	s := startSecure(t)
	fill := func(v string) string {
		r := strings.NewReplacer("{a}", strconv.FormatInt(s.jobA, 10), "{b}", strconv.FormatInt(s.jobB, 10), "{x}", "999999", "{sa}", s.sessA, "{sb}", s.sessB,
			"{ua}", uuidOf(s.sessA), "{ub}", uuidOf(s.sessB), "{xa}", uuidOf(s.sessA)+"-ses0000", "{xb}", uuidOf(s.sessB)+"-ses0000")
		return r.Replace(v)
	}
	type check struct {
		name                 string
		perm                 auth.Perm
		method, path, body   string
		otherPath, otherBody string
	}
	var checks []check
	seen := map[string]bool{}
	for _, r := range s.srv.Routes() {
		if r.Perm == 0 {
			t.Errorf("route %s %s has no rule", r.Method, r.Path)
		}
		key := r.Method + " " + r.Path
		if _, exact := routeCases[key]; !exact {
			// A route on one object shares its case with its list's
			// (DELETE /croft/v1/tokens/:id: "DELETE /croft/v1/tokens").
			key = strings.TrimSuffix(strings.TrimSuffix(key, "/:id"), "/:name")
		}
		if r.Path == "/api/*path" || r.Path == "/xmlrpc/*path" {
			// Coalition's catch-alls: their services are checked below.
			seen[key] = true
			continue
		}
		c, ok := routeCases[key]
		if !ok {
			t.Errorf("route %q has no case in routeCases: add one", key)
			continue
		}
		seen[key] = true
		if r.Perm != c.perm {
			t.Errorf("route %q has rule %s, want %s", key, r.Perm, c.perm)
		}
		method := r.Method
		if method == "ANY" {
			method = http.MethodPost
			if strings.HasPrefix(r.Path, "/debug/") {
				method = http.MethodGet
			}
		}
		checks = append(checks, check{key, r.Perm, method, c.path, c.body, c.otherPath, c.otherBody})
	}
	for _, r := range coalition.Routes() {
		key := r.Method + " " + r.Path
		c, ok := routeCases[key]
		if !ok {
			t.Errorf("Coalition service %q has no case in routeCases: add one", key)
			continue
		}
		seen[key] = true
		if r.Perm != c.perm {
			t.Errorf("Coalition service %q has rule %s, want %s", key, r.Perm, c.perm)
		}
		checks = append(checks, check{key, r.Perm, r.Method, c.path, c.body, c.otherPath, c.otherBody})
	}
	for key := range routeCases {
		if !seen[key] {
			t.Errorf("routeCases has %q, which is no route", key)
		}
	}
	if len(checks) != len(routeCases) {
		t.Fatalf("%d routes checked, %d cases", len(checks), len(routeCases))
	}
	for _, c := range checks {
		path, body := fill(c.path), fill(c.body)
		if code, out := s.raw(t, "", c.method, path, body); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %s, want 401", c.name, code, out)
		}
		if denied, ok := deniedTo[c.perm]; ok {
			if code, out := s.raw(t, denied, c.method, path, body); code != http.StatusForbidden {
				t.Errorf("%s as %s: %d %s, want 403", c.name, denied, code, out)
			}
		}
		right := allowedBy[c.perm]
		if c.otherPath != "" || c.otherBody != "" {
			op, ob := fill(c.otherPath), fill(c.otherBody)
			if op == "" {
				op = path
			}
			if code, out := s.raw(t, right, c.method, op, ob); code != http.StatusForbidden {
				t.Errorf("%s as %s aimed at another project or worker (%s %s): %d %s, want 403", c.name, right, op, ob, code, out)
			}
		}
		if code, out := s.raw(t, right, c.method, path, body); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s as %s: %d %s, want it allowed", c.name, right, code, out)
		}
	}
}

func TestTokensLifecycle(t *testing.T) {
	s := startSecure(t)
	ctx := s.ctx(t)
	admin := s.as("admin")
	var list []client.Token
	if err := admin.Do(ctx, http.MethodGet, client.PathTokens, nil, &list); err != nil || len(list) != 5 {
		t.Fatalf("tokens %+v %v", list, err)
	}
	for _, tok := range list {
		if tok.Secret != "" {
			t.Fatalf("a listed token shows its secret: %+v", tok)
		}
	}
	// Revocation takes effect at once.
	user := s.as("user-a")
	if _, err := user.Children(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, http.MethodDelete, client.PathTokens+"/user-a", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := user.Children(ctx, 0); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("a revoked token: %v, want 401", err)
	}
	// Status says whether access control is on.
	st, err := s.as("read-a").Status(ctx, "")
	if err != nil || st.Insecure {
		t.Fatalf("status %+v %v", st, err)
	}
	// No token secret is anywhere in the replicated state.
	snap := &strings.Builder{}
	if err := s.srv.Node().FSM().State().WriteSnapshot(writerOf(snap)); err != nil {
		t.Fatal(err)
	}
	for name, secret := range s.secrets {
		if strings.Contains(snap.String(), secret) {
			t.Fatalf("the secret of %s is in the snapshot", name)
		}
	}
}

// TestAccessAPIInputs sends the access API what a careless or hostile
// admin script might: malformed and oversized bodies, bad names and roles,
// a duplicate name, a token for a project that does not exist. Each is
// refused, and the lists are paged.
func TestAccessAPIInputs(t *testing.T) {
	s := startSecure(t)
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", client.PathTokens, `{"name":`, 400},
		{"POST", client.PathTokens, `{"name":"x","role":"user","projects":["` + strings.Repeat("p", 70<<10) + `"]}`, 413},
		{"POST", client.PathTokens, `{"name":"x","role":"root"}`, 400},
		{"POST", client.PathTokens, `{"name":"user-a","role":"user"}`, 400},
		{"POST", client.PathTokens, `{"name":"x","role":"user","projects":["nope"]}`, 404},
		{"POST", client.PathTokens, `{"name":"x\u0000","role":"user"}`, 400},
		{"POST", client.PathTokens, `{"name":"x","role":"user","workers":["w"]}`, 400},
		{"POST", client.PathProjects, `{"name":"../etc"}`, 400},
		{"POST", client.PathProjects, `{"name":"a"}`, 400},
		{"POST", client.PathProjects, `[1,2]`, 400},
		{"DELETE", client.PathProjects + "/default", ``, 400},
		{"DELETE", client.PathProjects + "/a", ``, 400}, // it holds a job and a token names it
		{"GET", client.PathTokens + "?limit=-2", ``, 400},
	} {
		if code, out := s.raw(t, "admin", c.method, c.path, c.body); code != c.want {
			t.Errorf("%s %s %.60s: %d %s, want %d", c.method, c.path, c.body, code, out, c.want)
		}
	}
	var page []client.Token
	if err := s.as("admin").Do(s.ctx(t), http.MethodGet, client.PathTokens+"?offset=1&limit=2", nil, &page); err != nil || len(page) != 2 || page[0].Name != "agent-w1" {
		t.Fatalf("a page of tokens: %+v %v", page, err)
	}
	var ps []client.Project
	if err := s.as("read-a").Do(s.ctx(t), http.MethodGet, client.PathProjects, nil, &ps); err != nil || len(ps) != 1 || ps[0].Name != "a" {
		t.Fatalf("the projects a read token of a sees: %+v %v", ps, err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func writerOf(b *strings.Builder) io.Writer {
	return writerFunc(func(p []byte) (int, error) { return b.Write(p) })
}

func TestReportsOnlyFromTheWorkerThatHoldsTheAttempt(t *testing.T) {
	s := startSecure(t)
	ctx := s.ctx(t)
	admin := s.as("admin")
	if err := admin.Do(ctx, http.MethodPost, client.PathTokens, client.TokenRequest{Name: "agent-w2", Role: raftstore.RoleAgent, Projects: []string{"*"}, Workers: []string{"w2"}}, nil); err != nil {
		t.Fatal(err)
	}
	id, err := admin.CreateJob(ctx, client.NewJob{Title: "victim", Command: "sleep 100", Project: "a"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.as("agent-w1").Pull(ctx, client.PullRequest{Name: "w1"})
	if err != nil || a == nil || a.JobID != id {
		t.Fatalf("pull %+v %v", a, err)
	}
	// A token bound to w1 forging a report under another name, and any
	// token not bound to w1, are refused: nobody else can finish, fail or
	// fill w1's job.
	for _, who := range []string{"user-all", "read-a"} {
		if _, err := s.as(who).Report(ctx, client.ReportRequest{Name: "w1", AttemptID: a.AttemptID, JobID: id, Done: true, ExitCode: 1}); !client.IsStatus(err, http.StatusForbidden) {
			t.Fatalf("report by %s: %v, want 403", who, err)
		}
	}
	if _, err := s.as("agent-w1").Report(ctx, client.ReportRequest{Name: "w2", AttemptID: a.AttemptID, JobID: id, Done: true}); !client.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("report under another name: %v, want 403", err)
	}
	if j, _ := admin.Job(ctx, id); j.State != "WORKING" {
		t.Fatalf("job after forged reports: %+v", j)
	}
	if r, err := s.as("agent-w1").Report(ctx, client.ReportRequest{Name: "w1", AttemptID: a.AttemptID, JobID: id, Done: true}); err != nil || !r.Accepted {
		t.Fatalf("the holder's report: %+v %v", r, err)
	}
}

func TestTrustedNetworkAndInsecure(t *testing.T) {
	s := startServerWith(t, ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{Insecure: true}})
	ctx := s.ctx(t)
	st, err := client.New(s.url).Status(ctx, "")
	if err != nil || !st.Insecure {
		t.Fatalf("insecure status %+v %v", st, err)
	}
	_, loop, _ := net.ParseCIDR("127.0.0.0/8")
	tr := startServerWith(t, ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{TrustNets: []*net.IPNet{loop}, TrustRoles: []string{raftstore.RoleAgent}}})
	c := client.New(tr.url)
	if err := c.Register(context.Background(), client.RegisterRequest{Name: "legacy"}); err != nil {
		t.Fatalf("a tokenless agent from a trusted network: %v", err)
	}
	if _, err := c.Children(ctx, 0); !client.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a tokenless read from a network trusted as agent: %v, want 403", err)
	}
}

// The Sahara v1.1 routes' cases: the tenant is in the path, so the other
// project's path is the 403 case (no object needs to exist: the allowed
// call may be a 404 or a 400). Routes ending in a static word are also
// mounted with ".json".
func init() {
	const p = "/v1.1/:project"
	uuid := "00000000-0000-0000-0000-000000000001"
	job := `{"name":"n","type":"Shell"}`
	type r struct {
		method, path string
		perm         auth.Perm
		body         string
		json         bool
	}
	for _, x := range []r{
		{"GET", "/jobs", auth.PermRead, "", true},
		{"POST", "/jobs", auth.PermWrite, job, true},
		{"GET", "/jobs/:id", auth.PermRead, "", false},
		{"PATCH", "/jobs/:id", auth.PermWrite, `{"name":"m"}`, false},
		{"DELETE", "/jobs/:id", auth.PermWrite, "", false},
		{"POST", "/jobs/:id/execute", auth.PermWrite, `{"cluster_id":"` + uuid + `"}`, true},
		{"GET", "/jobs/config-hints/:type", auth.PermRead, "", false},
		{"GET", "/job-types", auth.PermRead, "", true},
		{"GET", "/job-executions", auth.PermRead, "", true},
		{"GET", "/job-executions/:id", auth.PermRead, "", false},
		{"PATCH", "/job-executions/:id", auth.PermWrite, `{"info":{"status":"cancel"}}`, false},
		{"DELETE", "/job-executions/:id", auth.PermWrite, "", false},
		{"GET", "/job-executions/:id/refresh-status", auth.PermRead, "", true},
		{"GET", "/job-executions/:id/cancel", auth.PermWrite, "", true},
		{"GET", "/job-binary-internals", auth.PermRead, "", true},
		{"PUT", "/job-binary-internals/:name", auth.PermWrite, "echo hi", false},
		{"GET", "/job-binary-internals/:name", auth.PermRead, "", false},
		{"DELETE", "/job-binary-internals/:name", auth.PermWrite, "", false},
		{"GET", "/job-binary-internals/:name/data", auth.PermRead, "", true},
		{"GET", "/job-binaries", auth.PermRead, "", true},
		{"POST", "/job-binaries", auth.PermWrite, `{"name":"b","url":"file:///bin/true"}`, true},
		{"GET", "/job-binaries/:id", auth.PermRead, "", false},
		{"DELETE", "/job-binaries/:id", auth.PermWrite, "", false},
		{"GET", "/clusters", auth.PermRead, "", true},
		{"GET", "/clusters/:id", auth.PermRead, "", false},
	} {
		concrete := strings.NewReplacer(":id", uuid, ":type", "Shell", ":name", "script.sh").Replace(x.path)
		suffixes := []string{""}
		if x.json {
			suffixes = append(suffixes, ".json")
		}
		for _, s := range suffixes {
			routeCases[x.method+" "+p+x.path+s] = routeCase{perm: x.perm, path: "/v1.1/a" + concrete + s, body: x.body,
				otherPath: "/v1.1/b" + concrete + s, otherBody: x.body}
		}
	}
}
