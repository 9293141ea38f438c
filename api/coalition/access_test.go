package coalition

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

// secureFarm is a farm with access control, projects a and b, and a token
// per role.
type secureFarm struct {
	*farm
	tokens map[string]string // name -> secret
}

func newSecureFarm(t *testing.T, limits Limits) *secureFarm {
	f := &secureFarm{farm: newFarmWith(t, auth.Config{}, limits), tokens: map[string]string{}}
	for _, p := range []string{"a", "b"} {
		f.apply(&raftstore.ProjectCreate{Name: p})
	}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
		{Name: "user-all", Role: raftstore.RoleUser, Projects: []string{"*"}},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "agent-rn1", Role: raftstore.RoleAgent, Projects: []string{"a"}, Workers: []string{"rn-1"}},
	} {
		secret := "secret-" + tok.Name
		tok.ID, tok.Hash = "id-"+tok.Name, auth.Hash(secret)
		f.apply(&raftstore.TokenCreate{Token: tok})
		f.tokens[tok.Name] = secret
	}
	return f
}

func (f *secureFarm) apply(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(nil, cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// as sends a request with a token (by name; "" sends none).
func (f *secureFarm) as(token, method, path, body string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[token])
	}
	if method == http.MethodPost && strings.HasPrefix(path, "/workers/") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *secureFarm) mustAs(token, method, path, body string, want int) string {
	f.t.Helper()
	code, out := f.as(token, method, path, body)
	if code != want {
		f.t.Fatalf("%s %s %s as %s: %d %s, want %d", method, path, body, token, code, out, want)
	}
	return out
}

func TestAccessByRoleAndProject(t *testing.T) {
	f := newSecureFarm(t, Limits{})
	// No token: 401, in Coalition's plain-text style.
	code, body := f.as("", "GET", "/api/jobs", "")
	if code != 401 || strings.Contains(body, "{") {
		t.Fatalf("no token: %d %q", code, body)
	}
	if code, _ := f.as("", "PUT", "/api/jobs", `{"title":"x"}`); code != 401 {
		t.Fatalf("anonymous create: %d", code)
	}
	// A single-project token submits there by default.
	ja := f.mustAs("user-a", "PUT", "/api/jobs", `{"title":"in a","command":"true","environment":"SECRET=hunter2\\nPATH=/bin"}`, 200)
	jb := f.mustAs("admin", "PUT", "/api/jobs", `{"title":"in b","command":"true","project":"b"}`, 200)
	var got client.Job
	if err := json.Unmarshal([]byte(f.mustAs("user-a", "GET", "/api/jobs/"+ja, "", 200)), &got); err != nil || got.Project != "a" {
		t.Fatalf("job %s: %+v %v", ja, got, err)
	}
	// Wrong project: 403 on the job, invisible in the lists.
	f.mustAs("user-a", "GET", "/api/jobs/"+jb, "", 403)
	f.mustAs("user-a", "POST", "/api/jobs", `{"`+jb+`":{"title":"mine now"}}`, 403)
	f.mustAs("user-a", "DELETE", "/api/jobs", `[`+jb+`]`, 403)
	f.mustAs("user-a", "POST", "/api/pausejobs", `[`+jb+`]`, 403)
	f.mustAs("user-a", "PUT", "/api/jobs", `{"title":"x","project":"b"}`, 403)
	f.mustAs("user-a", "PUT", "/api/jobs", `{"title":"x","parent":`+jb+`}`, 403)
	for _, path := range []string{"/api/jobs", "/api/jobs/where/?where_clause=1", "/api/events?howlong=3600"} {
		if out := f.mustAs("user-a", "GET", path, "", 200); strings.Contains(out, "in b") {
			t.Errorf("%s shows project b to user-a: %s", path, out)
		}
	}
	if out := f.mustAs("user-a", "GET", "/api/jobs/count/where/?where_clause=1", "", 200); out != "1" {
		t.Errorf("count as user-a: %s", out)
	}
	if out := f.mustAs("user-all", "GET", "/api/jobs/count/where/?where_clause=1", "", 200); out != "2" {
		t.Errorf("count as user-all: %s", out)
	}
	// A read token reads, with environment values redacted (also from
	// where clauses, which could otherwise probe them), and writes nothing.
	var redacted client.Job
	_ = json.Unmarshal([]byte(f.mustAs("read-a", "GET", "/api/jobs/"+ja, "", 200)), &redacted)
	if redacted.Environment != "SECRET="+Redacted+`\nPATH=`+Redacted {
		t.Fatalf("read token sees environment %q", redacted.Environment)
	}
	if out := f.mustAs("read-a", "GET", "/api/jobs/count/where/?where_clause="+url.QueryEscape("environment LIKE '%hunter2%'"), "", 200); out != "0" {
		t.Fatalf("a read token probed the environment: count %s", out)
	}
	f.mustAs("read-a", "PUT", "/api/jobs", `{"title":"x"}`, 403)
	f.mustAs("read-a", "POST", "/api/resetjobs", `[`+ja+`]`, 403)
	// Farm-wide settings are the admins'.
	f.mustAs("user-all", "POST", "/api/affinities", `{"1":"gpu"}`, 403)
	f.mustAs("user-all", "POST", "/api/stopworkers", `["w"]`, 403)
	f.mustAs("admin", "POST", "/api/affinities", `{"1":"gpu"}`, 200)
	// An agent token speaks the worker protocol only.
	f.mustAs("agent-rn1", "GET", "/api/jobs", "", 403)
}

func TestWorkerProtocolIsBoundToTheTokensWorkers(t *testing.T) {
	f := newSecureFarm(t, Limits{})
	ja := f.mustAs("admin", "PUT", "/api/jobs", `{"title":"a job","command":"true","project":"a","priority":1}`, 200)
	f.mustAs("admin", "PUT", "/api/jobs", `{"title":"b job","command":"true","project":"b","priority":200}`, 200)
	// Another host name than the token's: 403; none at all: 401.
	f.mustAs("agent-rn1", "POST", "/workers/pickjob", "hostname=rn-2", 403)
	f.mustAs("", "POST", "/workers/pickjob", "hostname=rn-1", 401)
	f.mustAs("user-all", "POST", "/workers/pickjob", "hostname=rn-1", 403)
	// The token's worker serves its projects only: b's more urgent job
	// is not its to take.
	out := f.mustAs("agent-rn1", "POST", "/workers/pickjob", "hostname=rn-1", 200)
	if !strings.HasPrefix(out, "("+ja+",") {
		t.Fatalf("rn-1 picked %q, want job %s", out, ja)
	}
	// A slot name of the worker is covered; another worker's end is not.
	f.mustAs("agent-rn1", "POST", "/workers/pickjob", "hostname=rn-1/2", 200)
	f.mustAs("agent-rn1", "POST", "/workers/endjob", "hostname=rn-9&jobId="+ja+"&errorCode=0", 403)
	log := base64.StdEncoding.EncodeToString([]byte("hello\n"))
	f.mustAs("agent-rn1", "POST", "/workers/heartbeat", "hostname=rn-1&jobId="+ja+"&log="+url.QueryEscape(log), 200)
	f.mustAs("agent-rn1", "POST", "/workers/endjob", "hostname=rn-1&jobId="+ja+"&errorCode=0", 200)
	var j client.Job
	_ = json.Unmarshal([]byte(f.mustAs("admin", "GET", "/api/jobs/"+ja, "", 200)), &j)
	if j.State != "FINISHED" {
		t.Fatalf("job after endjob: %+v", j)
	}
}

func TestBoundsOfARequest(t *testing.T) {
	f := newSecureFarm(t, Limits{MaxBody: 64 << 10, MaxJobsPerRequest: 100, MaxJobOutput: 32})
	for _, c := range []struct {
		body string
		code int
		say  string
	}{
		{`{"title":"` + strings.Repeat("t", 70<<10) + `"}`, 413, "limit"},
		{`{"title":"` + strings.Repeat("t", raftstore.MaxTitleBytes+1) + `"}`, 413, "title"},
		{`{"command":"echo \u0000"}`, 400, "NUL"},
		{`{"environment":"A=\u0000"}`, 400, "environment"},
		{`{"timeout":9223372037}`, 400, "timeout"},
		{`{"affinity":"` + strings.Repeat("a", 65) + `"}`, 413, "affinity"},
		{`{"title":"g","children":[` + strings.TrimSuffix(strings.Repeat(`{"title":"c"},`, 100), ",") + `]}`, 413, "100"},
		{`{"title":"g","children":[{"title":"c","project":"b"}]}`, 400, "project"},
	} {
		code, out := f.as("admin", "PUT", "/api/jobs", c.body)
		if code != c.code || !strings.Contains(out, c.say) {
			t.Errorf("PUT %.60s: %d %.200s, want %d mentioning %q", c.body, code, out, c.code, c.say)
		}
	}
	if n := f.store.State().JobCount(); n != 0 {
		t.Fatalf("refused creates made %d jobs", n)
	}
	// Output past the cap goes no further than the cap.
	id := f.mustAs("admin", "PUT", "/api/jobs", `{"title":"chatty","command":"yes","project":"a"}`, 200)
	f.mustAs("agent-rn1", "POST", "/workers/pickjob", "hostname=rn-1", 200)
	chunk := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("y\n", 40)))
	for range 3 {
		f.mustAs("agent-rn1", "POST", "/workers/heartbeat", "hostname=rn-1&jobId="+id+"&log="+url.QueryEscape(chunk), 200)
	}
	var log string
	_ = json.Unmarshal([]byte(f.mustAs("admin", "GET", "/api/jobs/"+id+"/log", "", 200)), &log)
	if !strings.Contains(log, "truncated at 32 bytes") || len(log) > 200 {
		t.Fatalf("log past the cap: %q", log)
	}
}

func TestListsArePaged(t *testing.T) {
	f := newSecureFarm(t, Limits{})
	for i := range 10 {
		f.mustAs("admin", "PUT", "/api/jobs", fmt.Sprintf(`{"title":"j%d"}`, i), 200)
	}
	var page []client.Job
	if err := json.Unmarshal([]byte(f.mustAs("admin", "GET", "/api/jobs?offset=3&limit=4", "", 200)), &page); err != nil {
		t.Fatal(err)
	}
	if len(page) != 4 || page[0].Title != "j3" || page[3].Title != "j6" {
		t.Fatalf("page %+v", page)
	}
	if err := json.Unmarshal([]byte(f.mustAs("admin", "GET", "/api/jobs?offset=8", "", 200)), &page); err != nil || len(page) != 2 {
		t.Fatalf("last page %+v %v", page, err)
	}
	if err := json.Unmarshal([]byte(f.mustAs("admin", "GET", "/api/jobs?offset=80", "", 200)), &page); err != nil || len(page) != 0 {
		t.Fatalf("past the end %+v %v", page, err)
	}
	f.mustAs("admin", "GET", "/api/jobs?limit=-1", "", 400)
	f.mustAs("admin", "GET", "/api/jobs?offset=x", "", 400)
}
