// Package admin serves Croft's access API: tokens (admin only) and
// projects (created and deleted by admins, listed by anyone who reads).
// A token's secret is drawn here, on the leader, shown once in the reply
// of its creation, and never stored: the state keeps its SHA-256.
package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/raftstore"
)

// Tokens is what creating a token needs of the service layer.
type Tokens interface {
	CreateToken(ctx context.Context, t raftstore.Token) (raftstore.Token, error)
}

// Access is what the access API needs of the service layer; requests
// reach it on the leader only.
type Access interface {
	Tokens
	State() *raftstore.State
	RevokeToken(ctx context.Context, id string) error
	CreateProject(ctx context.Context, name string) (time.Time, error)
	DeleteProject(ctx context.Context, name string) error
}

// Handler serves the access API.
type Handler struct {
	access Access
}

// New returns the access API's handler.
func New(access Access) *Handler { return &Handler{access: access} }

// maxBody bounds a request body of the access API.
const maxBody = 64 << 10

// Register mounts the routes.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodPost, client.PathTokens, auth.PermAdmin, h.createToken)
	m.Handle(http.MethodGet, client.PathTokens, auth.PermAdmin, h.listTokens)
	m.Handle(http.MethodDelete, client.PathTokens+"/:id", auth.PermAdmin, h.revokeToken)
	m.Handle(http.MethodPost, client.PathProjects, auth.PermAdmin, h.createProject)
	m.Handle(http.MethodGet, client.PathProjects, auth.PermRead, h.listProjects)
	m.Handle(http.MethodDelete, client.PathProjects+"/:name", auth.PermAdmin, h.deleteProject)
}

func decode(c *gin.Context, v any) error {
	body, err := apierr.ReadBody(c, maxBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apierr.Bad("malformed JSON: %v", err)
	}
	return nil
}

// CreateToken draws a secret and an id for a token described by req,
// proposes it (only the secret's hash goes to the state) and returns it
// with its secret. The coordinator uses it too, for the bootstrap token.
func CreateToken(ctx context.Context, tokens Tokens, req client.TokenRequest, by string) (client.Token, error) {
	return CreateTokenWithSecret(ctx, tokens, req, by, "")
}

// CreateTokenWithSecret is CreateToken with a given secret ("" draws one):
// for a bootstrap admin token that the deployment provisions.
func CreateTokenWithSecret(ctx context.Context, tokens Tokens, req client.TokenRequest, by, secret string) (client.Token, error) {
	if len(req.Projects) == 0 && req.Role != raftstore.RoleAdmin {
		req.Projects = []string{raftstore.DefaultProject}
	}
	if secret == "" {
		var err error
		if secret, err = auth.NewSecret(); err != nil {
			return client.Token{}, err
		}
	}
	id, err := auth.NewID()
	if err != nil {
		return client.Token{}, err
	}
	t := raftstore.Token{ID: id, Name: req.Name, Role: req.Role, Projects: req.Projects, Workers: req.Workers,
		Hash: auth.Hash(secret), CreatedBy: by}
	if err := raftstore.CheckToken(&t); err != nil {
		return client.Token{}, err
	}
	t, err = tokens.CreateToken(ctx, t)
	if err != nil {
		return client.Token{}, err
	}
	out := renderToken(&t)
	out.Secret = secret
	return out, nil
}

func renderToken(t *raftstore.Token) client.Token {
	return client.Token{ID: t.ID, Name: t.Name, Role: t.Role, Projects: nonNil(t.Projects), Workers: t.Workers,
		Created: time.Unix(0, t.Created).UTC(), CreatedBy: t.CreatedBy}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func (h *Handler) createToken(c *gin.Context) {
	var req client.TokenRequest
	if err := decode(c, &req); err != nil {
		apierr.Abort(c, err)
		return
	}
	t, err := CreateToken(c, h.access, req, auth.From(c).Name)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, t)
}

// listTokens lists the tokens by name (never their secrets), within the
// request's ?offset=&limit= window.
func (h *Handler) listTokens(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	ts := h.access.State().Tokens()
	jsonstream.Pages(c, win, func() ([]raftstore.Token, bool) { return ts, false },
		func(t *raftstore.Token) any { return renderToken(t) })
}

// revokeToken revokes a token named by its id or, failing that, its name.
func (h *Handler) revokeToken(c *gin.Context) {
	key := c.Param("id")
	st := h.access.State()
	t, ok := st.TokenByID(key)
	if !ok {
		for _, o := range st.Tokens() {
			if o.Name == key {
				t, ok = o, true
			}
		}
	}
	if !ok {
		apierr.Abort(c, apierr.NotFound("token %q", key))
		return
	}
	if err := h.access.RevokeToken(c, t.ID); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, renderToken(&t))
}

func renderProject(p raftstore.ProjectInfo) client.Project {
	return client.Project{Name: p.Name, Created: time.Unix(0, p.Created).UTC(), Jobs: p.Jobs}
}

func (h *Handler) createProject(c *gin.Context) {
	var req client.ProjectRequest
	if err := decode(c, &req); err != nil {
		apierr.Abort(c, err)
		return
	}
	if err := raftstore.ValidProjectName(req.Name); err != nil {
		apierr.Abort(c, err)
		return
	}
	now, err := h.access.CreateProject(c, req.Name)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, client.Project{Name: req.Name, Created: now.UTC()})
}

// listProjects lists the projects the token may read, within the
// request's ?offset=&limit= window.
func (h *Handler) listProjects(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	p := auth.From(c)
	var mine []raftstore.ProjectInfo
	for _, pr := range h.access.State().Projects() {
		if p.CanRead(pr.Name) {
			mine = append(mine, pr)
		}
	}
	jsonstream.Pages(c, win, func() ([]raftstore.ProjectInfo, bool) { return mine, false },
		func(pr *raftstore.ProjectInfo) any { return renderProject(*pr) })
}

func (h *Handler) deleteProject(c *gin.Context) {
	name := c.Param("name")
	if err := h.access.DeleteProject(c, name); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}
