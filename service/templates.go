package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/dispatch"
)

// NewID draws an id: 128 random bits (crypto/rand) as 32 lowercase hex
// digits, the form of session, template and execution ids, drawn before
// Apply so Apply stays deterministic (and of the dialects' own ids drawn
// alike: Freezer's job and action ids, Jupyter's kernel ids).
func NewID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("%w: drawing an id: %v", raftstore.ErrInternal, err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CreateTemplate adds a template to project and returns it as stored.
func (s *Service) CreateTemplate(ctx context.Context, project string, spec raftstore.TemplateSpec) (raftstore.Template, error) {
	id, err := NewID()
	if err != nil {
		return raftstore.Template{}, err
	}
	c := &raftstore.TemplateCreate{Now: s.stamp(), ID: id, Project: project, Spec: spec}
	if _, err := s.apply(ctx, c); err != nil {
		return raftstore.Template{}, err
	}
	return s.templateAfter(c.ID, raftstore.Template{ID: id, Project: project, Spec: spec, Created: c.Now, Updated: c.Now}), nil
}

// UpdateTemplate changes template id's fields (nil: unchanged) and
// returns it as stored. A Doc or Labels patch of nil contents clears
// them (an empty value is what the entry carries).
func (s *Service) UpdateTemplate(ctx context.Context, id string, patch raftstore.TemplatePatch) (raftstore.Template, error) {
	return s.UpdateTemplateIf(ctx, id, 0, patch)
}

// UpdateTemplateIf is UpdateTemplate guarded by the template's revision
// (compare-and-set): refused with raftstore.ErrConflict unless the
// template is still at ifRevision (0: whatever it is).
func (s *Service) UpdateTemplateIf(ctx context.Context, id string, ifRevision int64, patch raftstore.TemplatePatch) (raftstore.Template, error) {
	// A pointer to a nil slice or map would encode as no patch at all.
	if patch.Doc != nil && *patch.Doc == nil {
		patch.Doc = &[]byte{}
	}
	if patch.Labels != nil && *patch.Labels == nil {
		patch.Labels = &map[string]string{}
	}
	c := &raftstore.TemplateUpdate{Now: s.stamp(), ID: id, Patch: patch, IfRevision: ifRevision}
	if _, err := s.apply(ctx, c); err != nil {
		return raftstore.Template{}, err
	}
	return s.templateAfter(id, raftstore.Template{ID: id, Updated: c.Now}), nil
}

// templateAfter reads template id after a write; if a later write deleted
// it meanwhile, the write still happened, and fallback stands for it.
func (s *Service) templateAfter(id string, fallback raftstore.Template) raftstore.Template {
	if x, ok := s.state().Template(id); ok {
		return x
	}
	return fallback
}

// DeleteTemplate removes template id; refused with
// raftstore.ErrTemplateInUse while it has executions, and
// raftstore.ErrProtected while it is protected.
func (s *Service) DeleteTemplate(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.TemplateDelete{Now: s.stamp(), ID: id})
	return err
}

// ExecuteRequest is what an execution of a template is given.
type ExecuteRequest struct {
	Template string
	// Pool is an affinity name the job needs besides the template's.
	Pool   string
	Args   []string
	Params map[string]string
	Doc    []byte
	// User becomes the job's user.
	User string
	// Host, when not "", pins the job to that host: it runs only on a
	// slot of it (see raftstore.Execute.Host).
	Host string
}

// Execute runs a template once: the execution and its job in one entry,
// within the project quota; a pull waiting for work is claimed for the
// job, as by CreateJobs (for a pinned job, a pull of one of its host's
// slots). It returns the execution with its job's state.
// A template without a command is refused with raftstore.ErrNoCommand.
func (s *Service) Execute(ctx context.Context, req ExecuteRequest) (raftstore.ExecutionStatus, error) {
	id, err := NewID()
	if err != nil {
		return raftstore.ExecutionStatus{}, err
	}
	c := &raftstore.Execute{Now: s.stamp(), ID: id, Template: req.Template, Pool: req.Pool, Args: req.Args,
		Params: req.Params, Doc: req.Doc, User: req.User, MaxProjectJobs: s.maxProjectJobs, Host: req.Host}
	var res any
	if ws := s.claimFor(req.Host); len(ws) > 0 {
		res, err = s.applyAndOffer(ctx, c, c.Now, ws)
	} else {
		res, err = s.apply(ctx, c)
	}
	if err != nil {
		return raftstore.ExecutionStatus{}, err
	}
	job, err := resultOf[int64](res, c)
	if err != nil {
		return raftstore.ExecutionStatus{}, err
	}
	if e, ok := s.state().Execution(id); ok {
		return e, nil
	}
	// Deleted (with its job) between the apply and this read.
	return raftstore.ExecutionStatus{Execution: raftstore.Execution{ID: id, Template: req.Template, JobID: job, Created: c.Now, Host: req.Host},
		ExitCode: raftstore.NoExitCode}, nil
}

// claimFor claims a waiting pull for a new job, if any waits: of a slot
// of host when the job is pinned to one (another worker's pick would find
// nothing of it).
func (s *Service) claimFor(host string) []*dispatch.Waiter {
	if s.offers.Len() == 0 {
		return nil
	}
	if host == "" {
		return s.offers.Claim(1)
	}
	h, ok := s.state().Host(host)
	if !ok {
		return nil // no agent of it yet: the job waits
	}
	return s.offers.ClaimWhere(1, func(worker string) bool { return slices.Contains(h.Slots, worker) })
}

// CancelExecution cancels execution id's job: a running attempt ends and
// its agent kills the process.
func (s *Service) CancelExecution(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.ExecutionCancel{Now: s.stamp(), ID: id})
	return err
}

// DeleteExecution forgets execution id and deletes its job; refused with
// raftstore.ErrExecutionActive until the job ended (cancel it first).
func (s *Service) DeleteExecution(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.ExecutionDelete{Now: s.stamp(), ID: id})
	return err
}
