package auth

import (
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/raftstore"
)

type tokenMap map[string]raftstore.Token

func (m tokenMap) TokenByHash(h string) (raftstore.Token, bool) { t, ok := m[h]; return t, ok }

func TestSecretFromEveryEcosystem(t *testing.T) {
	cases := []struct {
		header, value, query string
	}{
		{"Authorization", "Bearer s1", ""},
		{"Authorization", "bearer s1", ""},
		{"Authorization", "token s1", ""}, // Jupyter
		{"X-Auth-Token", "s1", ""},        // OpenStack
		{"", "", "token=s1"},              // Jupyter's query form
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/x?"+c.query, nil)
		if c.header != "" {
			r.Header.Set(c.header, c.value)
		}
		if got := Secret(r); got != "s1" {
			t.Errorf("%s: %q / %q: secret %q", c.header, c.value, c.query, got)
		}
	}
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Basic czE6")
	if got := Secret(r); got != "" {
		t.Errorf("basic auth taken as a token: %q", got)
	}
}

func TestSecretsAreRandomAndHashed(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b || !strings.HasPrefix(a, SecretPrefix) || len(a) < 40 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if h := Hash(a); len(h) != 64 || strings.Contains(h, a) || Hash(a) != h {
		t.Fatalf("hash %q", h)
	}
}

func TestPrincipalRights(t *testing.T) {
	user := FromToken(raftstore.Token{Name: "u", Role: raftstore.RoleUser, Projects: []string{"a"}})
	read := FromToken(raftstore.Token{Name: "r", Role: raftstore.RoleRead, Projects: []string{"a", "b"}})
	all := FromToken(raftstore.Token{Name: "all", Role: raftstore.RoleUser, Projects: []string{raftstore.AllProjects}})
	admin := FromToken(raftstore.Token{Name: "adm", Role: raftstore.RoleAdmin})
	agent := FromToken(raftstore.Token{Name: "ag", Role: raftstore.RoleAgent, Workers: []string{"render-1", "gpu-*"}})
	cases := []struct {
		p                     *Principal
		readA, writeA, readC  bool
		redacted, admin, some bool
	}{
		{user, true, true, false, false, false, true},
		{read, true, false, false, true, false, true},
		{all, true, true, true, false, false, true},
		{admin, true, true, true, false, true, true},
		{agent, false, false, false, true, false, false},
	}
	for _, c := range cases {
		got := [6]bool{c.p.CanRead("a"), c.p.CanWrite("a"), c.p.CanRead("c"), c.p.Redacted(), c.p.IsAdmin(), c.p.CanReadSome()}
		want := [6]bool{c.readA, c.writeA, c.readC, c.redacted, c.admin, c.some}
		if got != want {
			t.Errorf("%s: got %v, want %v", c.p.Name, got, want)
		}
	}
	for w, want := range map[string]bool{
		"render-1": true, "render-1/2": true, "render-1/x": false, "render-10": false, "render-1/": false,
		"gpu-": true, "gpu-07/3": true, "cpu-1": false, "": false,
	} {
		if agent.MayActAs(w) != want {
			t.Errorf("agent MayActAs(%q) = %v", w, !want)
		}
	}
	if user.MayActAs("render-1") || !admin.MayActAs("anything") {
		t.Error("only agents (and admins) act as workers")
	}
	if user.DefaultProject() != "a" || read.DefaultProject() != raftstore.DefaultProject {
		t.Errorf("default projects %q %q", user.DefaultProject(), read.DefaultProject())
	}
	if user.WorkerProjects() == nil || all.WorkerProjects() != nil {
		t.Error("a worker of a restricted token serves its projects, of an all-projects token everything")
	}
	for perm, who := range map[Perm][]*Principal{
		PermAdmin: {admin}, PermWrite: {admin, user, all}, PermRead: {admin, user, all, read}, PermAgent: {admin, agent},
	} {
		for _, p := range []*Principal{user, read, all, admin, agent} {
			allowed := false
			for _, w := range who {
				allowed = allowed || w == p
			}
			if err := perm.Check(p); (err == nil) != allowed || (err != nil && !errors.Is(err, apierr.ErrForbidden)) {
				t.Errorf("%s.Check(%s) = %v", perm, p.Name, err)
			}
		}
	}
}

func TestAuthenticate(t *testing.T) {
	tokens := tokenMap{Hash("good"): {ID: "t1", Name: "good", Role: raftstore.RoleUser, Projects: []string{"a"}}}
	_, trusted, _ := net.ParseCIDR("10.1.0.0/16")
	coordinator := net.ParseIP("10.9.0.1")
	a := New(Config{TrustNets: []*net.IPNet{trusted}, TrustRoles: []string{raftstore.RoleAgent}},
		func() Tokens { return tokens }, func(ip net.IP) bool { return ip.Equal(coordinator) })
	req := func(remote, token, xff string) (*Principal, error) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote + ":5555"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return a.Authenticate(r)
	}
	if p, err := req("192.0.2.1", "good", ""); err != nil || p.Name != "good" {
		t.Fatalf("good token: %+v %v", p, err)
	}
	for _, c := range []struct{ remote, token, xff string }{
		{"192.0.2.1", "", ""},                // nothing
		{"192.0.2.1", "bad", ""},             // unknown token
		{"10.1.2.3", "bad", ""},              // a bad token is not saved by a trusted address
		{"192.0.2.1", "", "10.1.2.3"},        // a forged header from a stranger
		{"10.9.0.1", "", "192.0.2.1"},        // a coordinator forwarding a stranger
		{"10.9.0.1", "", "10.1.2.3,1.2.3.4"}, // the last hop is what the coordinator saw
	} {
		if _, err := req(c.remote, c.token, c.xff); !errors.Is(err, apierr.ErrUnauthenticated) {
			t.Errorf("%+v: %v, want unauthenticated", c, err)
		}
	}
	for _, c := range []struct{ remote, xff string }{
		{"10.1.2.3", ""},
		{"10.9.0.1", "192.0.2.1, 10.1.2.3"}, // forwarded for a trusted client
	} {
		p, err := req(c.remote, "", c.xff)
		if err != nil || !p.MayActAs("any-worker") || p.CanReadSome() {
			t.Errorf("%+v: %+v %v, want the trusted agent role", c, p, err)
		}
	}
	if p, err := New(Config{Insecure: true}, nil, nil).Authenticate(httptest.NewRequest("GET", "/", nil)); err != nil || !p.IsAdmin() {
		t.Fatalf("insecure: %+v %v", p, err)
	}
}
