package native

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// newTemplatesTest is a farm with projects a and b, tokens user-a (write
// a), read-a, user-b and admin, and the template routes over the real
// service and FSM.
func newTemplatesTest(t *testing.T) *farmTest {
	gin.SetMode(gin.TestMode)
	f := &farmTest{t: t, store: &fsmStore{farmtest.NewStore(t)}}
	f.ok(&raftstore.SetRelease{Release: raftstore.Release})
	tokens := tokenMap{}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
		{Name: "user-b", Role: raftstore.RoleUser, Projects: []string{"b"}},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
	} {
		tokens[auth.Hash("secret-"+tok.Name)] = tok
	}
	for _, p := range []string{"a", "b"} {
		f.ok(&raftstore.ProjectCreate{Now: now, Name: p})
	}
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	e := gin.New()
	m := auth.Mount{Router: e, Auth: auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil), Abort: apierr.Abort, Table: &auth.Table{}}
	NewTemplates(f.store, svc).Register(m)
	f.engine = e
	return f
}

// want sends a request and wants status code; it decodes a 200's body
// into out when out is not nil.
func (f *farmTest) want(code int, token, method, path, body string, out any) {
	f.t.Helper()
	got, reply := f.do(token, method, path, body)
	if got != code {
		f.t.Fatalf("%s %s as %s: %d %s, want %d", method, path, token, got, reply, code)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(reply), out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, reply)
		}
	}
}

const shellBody = `{"name":"echo","type":"Shell","command":"sh -c {main} sh {args}","main":"echo \"$@\"","defaults":{"retry":1}%s}`

func TestTemplateRoutes(t *testing.T) {
	f := newTemplatesTest(t)
	var x client.Template
	// user-a's only project is the default one of its creates.
	f.want(http.StatusCreated, "user-a", "POST", client.PathTemplates, strings.Replace(shellBody, "%s", `,"doc":{"k":[1]},"labels":{"l":"v"}`, 1), &x)
	if len(x.ID) != 32 || x.Project != "a" || x.Name != "echo" || string(x.Doc) != `{"k":[1]}` || x.Labels["l"] != "v" {
		t.Fatalf("created %+v", x)
	}
	// Permissions and projects.
	f.want(http.StatusForbidden, "user-a", "POST", client.PathTemplates, strings.Replace(shellBody, "%s", `,"project":"b"`, 1), nil)
	f.want(http.StatusForbidden, "read-a", "POST", client.PathTemplates, strings.Replace(shellBody, "%s", "", 1), nil)
	f.want(http.StatusForbidden, "user-b", "GET", client.PathTemplates+"/"+x.ID, "", nil)
	f.want(http.StatusForbidden, "read-a", "PATCH", client.PathTemplates+"/"+x.ID, `{}`, nil)
	f.want(http.StatusForbidden, "read-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{}`, nil)
	f.want(http.StatusOK, "read-a", "GET", client.PathTemplates+"/"+x.ID, "", nil)
	var list []client.Template
	f.want(http.StatusOK, "user-b", "GET", client.PathTemplates, "", &list)
	if len(list) != 0 {
		t.Fatalf("user-b sees %+v", list)
	}
	// A public template is visible to every reader.
	f.want(http.StatusOK, "user-a", "PATCH", client.PathTemplates+"/"+x.ID, `{"public":true}`, &x)
	f.want(http.StatusOK, "user-b", "GET", client.PathTemplates, "", &list)
	if len(list) != 1 || !list[0].Public {
		t.Fatalf("user-b sees %+v", list)
	}
	f.want(http.StatusForbidden, "user-b", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{}`, nil)
	// 400, 404, 409, 413.
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates, strings.Replace(shellBody, "%s", "", 1), nil) // name taken
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates, `{"name":"x","type":"Shell","command":"{file}"}`, nil)
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates, `{"name":`, nil)
	f.want(http.StatusRequestEntityTooLarge, "user-a", "POST", client.PathTemplates, `{"name":"x","type":"Shell","main":"`+strings.Repeat("m", raftstore.MaxMainBytes+1)+`"}`, nil)
	f.want(http.StatusRequestEntityTooLarge, "user-a", "POST", client.PathTemplates, strings.Repeat(" ", maxTemplateBody+1), nil)
	f.want(http.StatusNotFound, "user-a", "GET", client.PathTemplates+"/nope", "", nil)
	f.want(http.StatusNotFound, "user-a", "POST", client.PathExecutions+"/nope/cancel", "", nil)
	f.want(http.StatusRequestEntityTooLarge, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"args":["`+strings.Repeat("a", raftstore.MaxArgsBytes+1)+`"]}`, nil)
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"params":{"A=B":"1"}}`, nil)
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"host":"a\nb"}`, nil)
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"host":"  "}`, nil)
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"host":7}`, nil)
	f.want(http.StatusRequestEntityTooLarge, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"host":"`+strings.Repeat("h", raftstore.MaxNameBytes+1)+`"}`, nil)

	var e client.Execution
	f.want(http.StatusCreated, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"args":["a b"],"params":{"P":"1"},"pool":"gpu"}`, &e)
	if len(e.ID) != 32 || e.Template != x.ID || e.Project != "a" || e.State != "waiting" || e.ReturnCode != nil || e.Pool != "gpu" || e.Host != "" {
		t.Fatalf("execution %+v", e)
	}
	j, _ := f.store.State().Job(e.JobID)
	if j.Command != `sh -c 'echo "$@"' sh 'a b'` || j.Env["P"] != "1" || j.User != "user-a" {
		t.Fatalf("job %+v", j)
	}
	f.want(http.StatusConflict, "user-a", "DELETE", client.PathTemplates+"/"+x.ID, "", nil)
	f.want(http.StatusConflict, "user-a", "DELETE", client.PathExecutions+"/"+e.ID, "", nil)
	f.want(http.StatusForbidden, "user-b", "GET", client.PathExecutions+"/"+e.ID, "", nil)
	f.want(http.StatusForbidden, "read-a", "POST", client.PathExecutions+"/"+e.ID+"/cancel", "", nil)
	var es []client.Execution
	f.want(http.StatusOK, "read-a", "GET", client.PathExecutions+"?template="+x.ID, "", &es)
	if len(es) != 1 || es[0].ID != e.ID {
		t.Fatalf("executions %+v", es)
	}
	f.want(http.StatusOK, "user-b", "GET", client.PathExecutions, "", &es)
	if len(es) != 0 {
		t.Fatalf("user-b sees executions %+v", es)
	}
	f.want(http.StatusOK, "admin", "GET", client.PathExecutions+"?template=other", "", &es)
	if len(es) != 0 {
		t.Fatalf("another template's executions %+v", es)
	}
	f.want(http.StatusOK, "user-a", "POST", client.PathExecutions+"/"+e.ID+"/cancel", "", &e)
	if e.State != "canceled" || !e.Ended {
		t.Fatalf("canceled %+v", e)
	}
	f.want(http.StatusNoContent, "user-a", "DELETE", client.PathExecutions+"/"+e.ID, "", nil)
	f.want(http.StatusNotFound, "user-a", "GET", client.PathExecutions+"/"+e.ID, "", nil)
	// Pinned to a host: shown, and its job runs only there.
	f.want(http.StatusCreated, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{"host":"render-7"}`, &e)
	if e.Host != "render-7" || e.State != "waiting" {
		t.Fatalf("pinned execution %+v", e)
	}
	f.want(http.StatusOK, "read-a", "GET", client.PathExecutions+"/"+e.ID, "", &e)
	if e.Host != "render-7" {
		t.Fatalf("pinned execution read back %+v", e)
	}
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "w", Host: &raftstore.HostInfo{Name: "elsewhere"}})
	if a := f.ok(&raftstore.Pick{Now: now, Worker: "w"}).(*raftstore.Assignment); a != nil {
		t.Fatalf("another host's slot took the pinned job: %+v", a)
	}
	f.want(http.StatusOK, "user-a", "POST", client.PathExecutions+"/"+e.ID+"/cancel", "", nil)
	f.want(http.StatusNoContent, "user-a", "DELETE", client.PathExecutions+"/"+e.ID, "", nil)
	// Protected: 409 until an update clears it.
	f.want(http.StatusOK, "user-a", "PATCH", client.PathTemplates+"/"+x.ID, `{"protected":true}`, nil)
	f.want(http.StatusConflict, "user-a", "DELETE", client.PathTemplates+"/"+x.ID, "", nil)
	f.want(http.StatusConflict, "user-a", "PATCH", client.PathTemplates+"/"+x.ID, `{"name":"y"}`, nil)
	f.want(http.StatusOK, "user-a", "PATCH", client.PathTemplates+"/"+x.ID, `{"protected":false,"command":""}`, &x)
	// Without a command it cannot run: 400.
	f.want(http.StatusBadRequest, "user-a", "POST", client.PathTemplates+"/"+x.ID+"/execute", `{}`, nil)
	f.want(http.StatusNoContent, "user-a", "DELETE", client.PathTemplates+"/"+x.ID, "", nil)
	f.want(http.StatusNotFound, "user-a", "DELETE", client.PathTemplates+"/"+x.ID, "", nil)
}
