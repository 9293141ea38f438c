package sahara

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

const now = farmtest.Now

// farm is a state with projects a and b, the usual tokens and the
// dialect mounted as a coordinator mounts it.
type farm struct {
	t      *testing.T
	store  *farmtest.Store
	engine *gin.Engine
}

func newFarm(t *testing.T, cfg Config) *farm {
	gin.SetMode(gin.TestMode)
	f := &farm{t: t, store: farmtest.NewStore(t)}
	f.store.Projects(t, "a", "b")
	tokens := farmtest.TokensOf(farmtest.Farm4...)
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	a := auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil)
	f.engine = gin.New()
	New(f.store, svc, cfg).Register(auth.Mount{Router: f.engine, Auth: a, Table: &auth.Table{}})
	return f
}

type reply struct {
	code int
	body string
}

// do sends a request with X-Auth-Token ("" for none), as saharaclient.
func (f *farm) do(token, method, path, body string) reply {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("X-Auth-Token", "secret-"+token)
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return reply{rec.Code, rec.Body.String()}
}

func (f *farm) want(r reply, code int) map[string]any {
	f.t.Helper()
	if r.code != code {
		f.t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
	if r.body == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		f.t.Fatalf("decoding %q: %v", r.body, err)
	}
	return m
}

// wantErr checks a Sahara error answer.
func (f *farm) wantErr(r reply, code int, name string) {
	f.t.Helper()
	m := f.want(r, code)
	if m["error_name"] != name || m["error_code"] != float64(code) || !strings.Contains(m["error_message"].(string), "\nError ID: ") {
		f.t.Fatalf("error %s, want %d %s", r.body, code, name)
	}
}

func (f *farm) ok(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// script uploads a job-binary-internal and a job binary pointing at it;
// the answer is the binary's id.
func (f *farm) script(name, text string) string {
	f.t.Helper()
	in := f.want(f.do("user-a", "PUT", "/v1.1/a/job-binary-internals/"+url.PathEscape(name), text), 202)["job_binary_internal"].(map[string]any)
	b := f.want(f.do("user-a", "POST", "/v1.1/a/job-binaries", fmt.Sprintf(`{"name":%q,"url":"internal-db://%s","description":"d"}`, name, in["id"])), 202)
	return b["job_binary"].(map[string]any)["id"].(string)
}

func (f *farm) shellJob(name, bin string) string {
	f.t.Helper()
	j := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", fmt.Sprintf(`{"name":%q,"type":"Shell","mains":[%q]}`, name, bin)), 202)
	return j["job"].(map[string]any)["id"].(string)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// §4.5's samples: the create request (its binaries must exist), the show
// response's shape, and the execute request (Croft has no data sources).
func TestSamples(t *testing.T) {
	f := newFarm(t, Config{JobTypes: map[string]string{TypePig: "pig -f {main} {args}"}})
	create := `{"description": "This is pig job example", "mains": ["90d9d5ec-11aa-48bd-bc8c-34936ce0db6e"],
		"libs": ["320a2ca7-25fd-4b48-9bc3-4fb1b6c4ff27"], "type": "Pig", "name": "pig-job-example"}`
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", create), 400, "INVALID_REFERENCE")
	main := f.want(f.do("user-a", "POST", "/v1.1/a/job-binaries", `{"name":"example.pig","url":"file:///opt/example.pig"}`), 202)["job_binary"].(map[string]any)
	lib := f.want(f.do("user-a", "POST", "/v1.1/a/job-binaries.json", `{"name":"udf.jar","url":"file:///opt/udf.jar"}`), 202)["job_binary"].(map[string]any)
	create = strings.NewReplacer("90d9d5ec-11aa-48bd-bc8c-34936ce0db6e", main["id"].(string), "320a2ca7-25fd-4b48-9bc3-4fb1b6c4ff27", lib["id"].(string)).Replace(create)
	job := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", create), 202)["job"].(map[string]any)
	show := f.want(f.do("read-a", "GET", "/v1.1/a/jobs/"+job["id"].(string)+".json", ""), 200)["job"].(map[string]any)
	want := []string{"created_at", "description", "id", "interface", "is_protected", "is_public", "libs", "mains", "name", "tenant_id", "type", "updated_at"}
	if got := keys(show); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("job keys %v, want %v", got, want)
	}
	if show["name"] != "pig-job-example" || show["type"] != "Pig" || show["tenant_id"] != "a" || show["updated_at"] != nil || len(show["id"].(string)) != 36 {
		t.Fatalf("job %v", show)
	}
	libs := show["libs"].([]any)
	if len(libs) != 1 || libs[0].(map[string]any)["url"] != "file:///opt/udf.jar" || libs[0].(map[string]any)["name"] != "udf.jar" {
		t.Fatalf("libs %v", libs)
	}
	if ca := show["created_at"].(string); len(ca) != len("2015-02-10 14:25:48") || ca[10] != ' ' {
		t.Fatalf("created_at %q", ca)
	}
	// The update sample: 202 and the job with the new name and description.
	up := f.want(f.do("user-a", "PATCH", "/v1.1/a/jobs/"+job["id"].(string), `{"description": "This is public pig job example", "name": "public-pig-job-example"}`), 202)["job"].(map[string]any)
	if up["name"] != "public-pig-job-example" || up["description"] != "This is public pig job example" {
		t.Fatalf("updated %v", up)
	}
	exec := `{"cluster_id": "811e1134-666f-4c48-bc92-afb5b10c9d8c", "input_id": "3e1bc8e6-8c69-4749-8e52-90d9341d15bc",
		"output_id": "52146b52-6540-4aac-a024-fee253cf52a9", "job_configs": {"configs": {"mapred.map.tasks": "1", "mapred.reduce.tasks": "1"},
		"args": ["arg1", "arg2"], "params": {"param2": "value2", "param1": "value1"}}}`
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+job["id"].(string)+"/execute", exec), 400, "INVALID_REFERENCE")
}

// §4.3's pagination rule: markers at both ends, unknown marker 404,
// sort_by with '-', column filters.
func TestPagination(t *testing.T) {
	f := newFarm(t, Config{})
	bin := f.script("s.sh", "echo hi")
	var ids []string
	for _, n := range []string{"e", "d", "c", "b", "a"} {
		ids = append(ids, f.shellJob("job-"+n, bin))
	}
	sort.Strings(ids)
	list := func(q string) ([]string, any) {
		t.Helper()
		m := f.want(f.do("read-a", "GET", "/v1.1/a/jobs?"+q, ""), 200)
		var out []string
		for _, j := range m["jobs"].([]any) {
			out = append(out, j.(map[string]any)["id"].(string))
		}
		return out, m["markers"]
	}
	if got, markers := list(""); fmt.Sprint(got) != fmt.Sprint(ids) || markers != nil {
		t.Fatalf("all: %v %v", got, markers)
	}
	got, markers := list("limit=2")
	if fmt.Sprint(got) != fmt.Sprint(ids[:2]) || fmt.Sprint(markers) != fmt.Sprint(map[string]any{"prev": nil, "next": ids[1]}) {
		t.Fatalf("first page: %v %v", got, markers)
	}
	got, markers = list("limit=2&marker=" + ids[1])
	if fmt.Sprint(got) != fmt.Sprint(ids[2:4]) || fmt.Sprint(markers) != fmt.Sprint(map[string]any{"prev": nil, "next": ids[3]}) {
		t.Fatalf("second page: %v %v", got, markers)
	}
	got, markers = list("limit=2&marker=" + ids[3])
	if fmt.Sprint(got) != fmt.Sprint(ids[4:]) || fmt.Sprint(markers) != fmt.Sprint(map[string]any{"prev": ids[1], "next": nil}) {
		t.Fatalf("last page: %v %v", got, markers)
	}
	got, markers = list("limit=2&marker=" + ids[4])
	if len(got) != 0 || fmt.Sprint(markers) != fmt.Sprint(map[string]any{"prev": ids[2], "next": nil}) {
		t.Fatalf("past the end: %v %v", got, markers)
	}
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?marker=00000000-0000-0000-0000-000000000000", ""), 404, "NOT_FOUND")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?limit=0", ""), 400, "INVALID_DATA")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?limit=x", ""), 400, "INVALID_DATA")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?sort_by=tenant", ""), 400, "INVALID_DATA")
	m := f.want(f.do("read-a", "GET", "/v1.1/a/jobs.json?sort_by=-name&limit=2", ""), 200)
	js := m["jobs"].([]any)
	if js[0].(map[string]any)["name"] != "job-e" || js[1].(map[string]any)["name"] != "job-d" {
		t.Fatalf("sorted by -name: %v", js)
	}
	m = f.want(f.do("read-a", "GET", "/v1.1/a/jobs?name=job-c&type=Shell", ""), 200)
	if js := m["jobs"].([]any); len(js) != 1 || js[0].(map[string]any)["name"] != "job-c" {
		t.Fatalf("filtered: %v", js)
	}
	// Binaries are not jobs; Freezer jobs (templates of type freezer)
	// are not either.
	if _, err := f.store.Apply(context.Background(), &raftstore.TemplateCreate{Now: now, ID: strings.Repeat("f", 32), Project: "a",
		Spec: raftstore.TemplateSpec{Name: "fz", Type: "freezer", Command: "true"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := list(""); len(got) != 5 {
		t.Fatalf("jobs %v", got)
	}
	// Other tenants see public jobs only.
	if js := f.want(f.do("user-b", "GET", "/v1.1/b/jobs", ""), 200)["jobs"].([]any); len(js) != 0 {
		t.Fatalf("b sees %v", js)
	}
	f.want(f.do("user-a", "PATCH", "/v1.1/a/jobs/"+ids[0], `{"is_public":true}`), 202)
	if js := f.want(f.do("user-b", "GET", "/v1.1/b/jobs", ""), 200)["jobs"].([]any); len(js) != 1 {
		t.Fatalf("b sees %v", js)
	}
	f.wantErr(f.do("user-b", "DELETE", "/v1.1/b/jobs/"+ids[0], ""), 400, "DELETION_FAILED")
}

// A Shell job executed on a pool: it runs on a worker of the pool, with
// its script, args and params; it reaches SUCCEEDED with its return code;
// another execution is KILLED by cancel; the job cannot be deleted while
// executions reference it.
func TestShellOnPool(t *testing.T) {
	f := newFarm(t, Config{})
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "w1", SetAffinity: true, Affinity: "gpu,edp"})
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "w2", SetAffinity: true, Affinity: "cpu"})
	clusters := f.want(f.do("read-a", "GET", "/v1.1/a/clusters?sort_by=name", ""), 200)["clusters"].([]any)
	var names []string
	for _, c := range clusters {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	if fmt.Sprint(names) != "[cpu edp gpu]" {
		t.Fatalf("clusters %v", names)
	}
	edp := PoolID("edp")
	if c := f.want(f.do("read-a", "GET", "/v1.1/a/clusters/"+edp, ""), 200)["cluster"].(map[string]any); c["status"] != "Active" || c["id"] != edp {
		t.Fatalf("cluster %v", c)
	}
	bin := f.script("hello.sh", `echo "hello $1 $GREETING"; exit 3`)
	job := f.shellJob("hello", bin)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+job+"/execute", `{"cluster_id":"00000000-0000-0000-0000-000000000000"}`), 400, "INVALID_REFERENCE")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+job+"/execute", `{"cluster_id":"`+edp+`","job_configs":{"args":[1]}}`), 400, "VALIDATION_ERROR")
	r := f.want(f.do("user-a", "POST", "/v1.1/a/jobs/"+job+"/execute",
		`{"cluster_id":"`+edp+`","job_configs":{"args":["world"],"params":{"GREETING":"hi"},"configs":{}}}`), 202)["job_execution"].(map[string]any)
	sample := []string{"cluster_id", "created_at", "id", "info", "input_id", "is_protected", "is_public", "job_configs", "job_id", "output_id", "tenant_id"}
	for _, k := range sample {
		if _, ok := r[k]; !ok {
			t.Fatalf("execution lacks %q: %v", k, r)
		}
	}
	if r["info"].(map[string]any)["status"] != StatusPending || r["job_id"] != job || r["cluster_id"] != edp || r["return_code"] != nil {
		t.Fatalf("execution %v", r)
	}
	if ca := r["created_at"].(string); ca[10] != 'T' {
		t.Fatalf("created_at %q", ca)
	}
	// Not w2 (not in the pool): w1 takes it.
	if a, _ := f.ok(&raftstore.Pick{Now: now + 1, Worker: "w2"}).(*raftstore.Assignment); a != nil {
		t.Fatalf("w2 took %+v", a)
	}
	a, _ := f.ok(&raftstore.Pick{Now: now + 2, Worker: "w1"}).(*raftstore.Assignment)
	if a == nil || a.Command != `/bin/sh -c 'echo "hello $1 $GREETING"; exit 3' sh 'world'` || a.Env["GREETING"] != "hi" {
		t.Fatalf("assignment %+v", a)
	}
	eid := r["id"].(string)
	show := func() map[string]any {
		return f.want(f.do("read-a", "GET", "/v1.1/a/job-executions/"+eid+"/refresh-status", ""), 200)["job_execution"].(map[string]any)
	}
	if s := show()["info"].(map[string]any)["status"]; s != StatusRunning {
		t.Fatalf("status %v", s)
	}
	f.ok(&raftstore.Report{Now: now + 3, Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true, ExitCode: 0, LogOffset: -1})
	if e := show(); e["info"].(map[string]any)["status"] != StatusSucceeded || e["return_code"] != float64(0) || e["end_time"] == nil {
		t.Fatalf("ended %v", e)
	}
	// A second run is canceled: KILLED.
	r2 := f.want(f.do("user-a", "POST", "/v1.1/a/jobs/"+job+"/execute", `{"cluster_id":"`+edp+`"}`), 202)["job_execution"].(map[string]any)
	e2 := r2["id"].(string)
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/job-executions/"+e2+"/cancel", ""), 403, "FORBIDDEN")
	k := f.want(f.do("user-a", "GET", "/v1.1/a/job-executions/"+e2+"/cancel", ""), 200)["job_execution"].(map[string]any)
	if k["info"].(map[string]any)["status"] != StatusKilled {
		t.Fatalf("canceled %v", k)
	}
	// Lists: both, sorted by status; markers.
	m := f.want(f.do("read-a", "GET", "/v1.1/a/job-executions?sort_by=status", ""), 200)
	list := m["job_executions"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["id"] != e2 || list[1].(map[string]any)["id"] != eid {
		t.Fatalf("executions by status %v", list)
	}
	f.wantErr(f.do("user-a", "DELETE", "/v1.1/a/jobs/"+job, ""), 400, "DELETION_FAILED")
	f.wantErr(f.do("user-a", "DELETE", "/v1.1/a/job-binaries/"+bin, ""), 400, "DELETION_FAILED")
	// The flags of an execution change after execute (job-ex-update-request.json);
	// a protected one only when the patch clears is_protected.
	if x := f.want(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"is_public": true}`), 202)["job_execution"].(map[string]any); x["is_public"] != true {
		t.Fatalf("is_public after the patch: %v", x)
	}
	f.want(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"is_protected": true}`), 202)
	f.wantErr(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"is_public": false}`), 400, "UPDATE_FAILED")
	f.wantErr(f.do("user-a", "DELETE", "/v1.1/a/job-executions/"+eid, ""), 400, "DELETION_FAILED")
	if x := f.want(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"is_protected": false, "is_public": false}`), 202)["job_execution"].(map[string]any); x["is_public"] != false || x["is_protected"] != false {
		t.Fatalf("flags after clearing protection: %v", x)
	}
	f.wantErr(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"is_public": "yes"}`), 400, "VALIDATION_ERROR")
	f.wantErr(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"info":{"status":"suspend"}}`), 400, "INVALID_DATA")
	f.want(f.do("user-a", "PATCH", "/v1.1/a/job-executions/"+eid, `{"info":{"status":"cancel"}}`), 202)
	f.want(f.do("user-a", "DELETE", "/v1.1/a/job-executions/"+eid, ""), 204)
	f.want(f.do("user-a", "DELETE", "/v1.1/a/job-executions/"+e2, ""), 204)
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/job-executions/"+eid, ""), 404, "NOT_FOUND")
	f.want(f.do("user-a", "DELETE", "/v1.1/a/jobs/"+job+".json", ""), 204)
	f.want(f.do("user-a", "DELETE", "/v1.1/a/job-binaries/"+bin, ""), 204)
}

// A failing run is DONEWITHERROR with its code; a type without a
// configured command is refused at execute; a protected job is neither
// changed nor deleted until is_protected is cleared.
func TestFailuresAndConfig(t *testing.T) {
	f := newFarm(t, Config{JobTypes: map[string]string{TypeSpark: "spark-submit {main} {args}"}})
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "w1", SetAffinity: true, Affinity: "edp"})
	edp := PoolID("edp")
	job := f.shellJob("fail", f.script("f.sh", "exit 3"))
	r := f.want(f.do("user-a", "POST", "/v1.1/a/jobs/"+job+"/execute", `{"cluster_id":"`+edp+`"}`), 202)["job_execution"].(map[string]any)
	a, _ := f.ok(&raftstore.Pick{Now: now + 1, Worker: "w1"}).(*raftstore.Assignment)
	f.ok(&raftstore.Report{Now: now + 2, Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true, ExitCode: 3, LogOffset: -1})
	e := f.want(f.do("read-a", "GET", "/v1.1/a/job-executions/"+r["id"].(string), ""), 200)["job_execution"].(map[string]any)
	if e["info"].(map[string]any)["status"] != StatusDoneWithError || e["return_code"] != float64(3) {
		t.Fatalf("failed run %v", e)
	}
	jar := f.want(f.do("user-a", "POST", "/v1.1/a/job-binaries", `{"name":"app.jar","url":"file:///opt/app.jar"}`), 202)["job_binary"].(map[string]any)["id"].(string)
	spark := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"sp","type":"Spark","mains":["`+jar+`"]}`), 202)["job"].(map[string]any)["id"].(string)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+spark+"/execute", `{"cluster_id":"`+edp+`","job_configs":{"params":{"a":"b"}}}`), 400, "INVALID_DATA")
	f.want(f.do("user-a", "POST", "/v1.1/a/jobs/"+spark+"/execute", `{"cluster_id":"`+edp+`","job_configs":{"args":["x"]}}`), 202)
	if a, _ := f.ok(&raftstore.Pick{Now: now + 3, Worker: "w1"}).(*raftstore.Assignment); a == nil || a.Command != "spark-submit '/opt/app.jar' 'x'" {
		t.Fatalf("spark assignment %+v", a)
	}
	storm := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"st","type":"Storm","mains":["`+jar+`"]}`), 202)["job"].(map[string]any)["id"].(string)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+storm+"/execute", `{"cluster_id":"`+edp+`"}`), 400, "INVALID_DATA")
	types := f.want(f.do("read-a", "GET", "/v1.1/a/job-types", ""), 200)["job_types"].([]any)
	if len(types) != 2 || types[0].(map[string]any)["name"] != "Shell" || types[1].(map[string]any)["name"] != "Spark" {
		t.Fatalf("job types %v", types)
	}
	f.want(f.do("read-a", "GET", "/v1.1/a/jobs/config-hints/Spark", ""), 200)
	// Java needs its main class, and libs.
	java := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"jv","type":"Java","libs":["`+jar+`"]}`), 202)["job"].(map[string]any)["id"].(string)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs/"+java+"/execute", `{"cluster_id":"`+edp+`","job_configs":{"configs":{}}}`), 400, "INVALID_DATA")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"jv2","type":"Java"}`), 400, "INVALID_DATA")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"jv2","type":"Java","libs":["`+jar+`"],"mains":["`+jar+`"]}`), 400, "INVALID_DATA")
	// Protected.
	p := f.want(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"prot","type":"Spark","mains":["`+jar+`"],"is_protected":true}`), 202)["job"].(map[string]any)["id"].(string)
	f.wantErr(f.do("user-a", "PATCH", "/v1.1/a/jobs/"+p, `{"name":"x"}`), 400, "UPDATE_FAILED")
	f.wantErr(f.do("user-a", "DELETE", "/v1.1/a/jobs/"+p, ""), 400, "DELETION_FAILED")
	f.want(f.do("user-a", "PATCH", "/v1.1/a/jobs/"+p, `{"is_protected":false,"name":"y"}`), 202)
	f.want(f.do("user-a", "DELETE", "/v1.1/a/jobs/"+p, ""), 204)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", `{"name":"sp","type":"Spark","mains":["`+jar+`"]}`), 409, "NAME_ALREADY_EXISTS")
}

// Hostile input: no token, another tenant, 100 MB, bad JSON, bad types,
// NUL bytes, unknown fields.
func TestBadInput(t *testing.T) {
	f := newFarm(t, Config{})
	f.wantErr(f.do("", "GET", "/v1.1/a/jobs", ""), 401, "UNAUTHORIZED")
	f.wantErr(f.do("user-a", "GET", "/v1.1/b/jobs", ""), 403, "FORBIDDEN")
	f.wantErr(f.do("read-a", "POST", "/v1.1/a/jobs", `{"name":"n","type":"Shell"}`), 403, "FORBIDDEN")
	big := strings.Repeat("x", 100<<20)
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", big), 413, "REQUEST_ENTITY_TOO_LARGE")
	f.wantErr(f.do("user-a", "PUT", "/v1.1/a/job-binary-internals/big", big), 413, "REQUEST_ENTITY_TOO_LARGE")
	for body, name := range map[string]string{
		`{`:                                 "MALFORMED_REQUEST_BODY",
		`[1]`:                               "MALFORMED_REQUEST_BODY",
		strings.Repeat("[", 100):            "MALFORMED_REQUEST_BODY",
		`{"name":"n"}`:                      "VALIDATION_ERROR",
		`{"name":"n","type":"Shell","x":1}`: "VALIDATION_ERROR",
		`{"name":7,"type":"Shell"}`:         "VALIDATION_ERROR",
		`{"name":"n","type":"Hadoop"}`:      "VALIDATION_ERROR",
		`{"name":"n\u0000","type":"Shell"}`: "VALIDATION_ERROR",
		`{"name":"` + strings.Repeat("n", 51) + `","type":"Shell"}`: "VALIDATION_ERROR",
		`{"name":"n","type":"Shell"}`:                               "INVALID_DATA",
		`{"name":"n","type":"Shell","mains":[""]}`:                  "VALIDATION_ERROR",
		`{"name":"n","type":"Shell","mains":"x"}`:                   "VALIDATION_ERROR",
		`{"name":"n","type":"Shell","is_public":"yes"}`:             "VALIDATION_ERROR",
	} {
		f.wantErr(f.do("user-a", "POST", "/v1.1/a/jobs", body), 400, name)
	}
	f.wantErr(f.do("user-a", "PUT", "/v1.1/a/job-binary-internals/nul", "echo \x00"), 400, "VALIDATION_ERROR")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/job-binaries", `{"name":"b","url":"swift://c/o"}`), 400, "INVALID_DATA")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/job-binaries", `{"name":"b","url":"file://../etc"}`), 400, "INVALID_DATA")
	f.wantErr(f.do("user-a", "POST", "/v1.1/a/job-binaries", `{"name":"b","url":"internal-db://00000000-0000-0000-0000-000000000000"}`), 400, "INVALID_REFERENCE")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs/not-a-uuid", ""), 404, "NOT_FOUND")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?limit=99999999999999999999999", ""), 400, "INVALID_DATA")
	f.wantErr(f.do("read-a", "GET", "/v1.1/a/jobs?name=%00", ""), 400, "INVALID_DATA")
}

// TestListerIsBounded: a list gathers at most MaxListed objects that pass
// its filters (what the filters drop does not count), then stops with a
// 413: one request's memory is bounded whatever the farm's size.
func TestListerIsBounded(t *testing.T) {
	l := lister{q: listQuery{filters: map[string]string{"name": "keep"}}}
	for i := 0; i < 3*MaxListed; i++ {
		if !l.add(obj{"id": i, "name": "drop"}) {
			t.Fatalf("stopped at %d objects the filters drop", i)
		}
	}
	for i := 0; i < MaxListed; i++ {
		if !l.add(obj{"id": i, "name": "keep"}) {
			t.Fatalf("stopped at %d kept objects", i)
		}
	}
	if l.add(obj{"id": -1, "name": "keep"}) || !errors.Is(l.err, raftstore.ErrTooLarge) || len(l.all) != MaxListed {
		t.Fatalf("past the bound: %d gathered, %v", len(l.all), l.err)
	}
}
