package service

import (
	"context"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// CreateToken adds t, whose id and secret hash the caller drew (secrets
// are the access layer's: package auth), and returns it as stored, with
// its creation time.
func (s *Service) CreateToken(ctx context.Context, t raftstore.Token) (raftstore.Token, error) {
	now := s.stamp()
	if _, err := s.apply(ctx, &raftstore.TokenCreate{Now: now, Token: t}); err != nil {
		return raftstore.Token{}, err
	}
	t.Created = now
	return t, nil
}

// RevokeToken removes the token with this id.
func (s *Service) RevokeToken(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.TokenRevoke{Now: s.stamp(), ID: id})
	return err
}

// CreateProject adds a project and returns its creation time.
func (s *Service) CreateProject(ctx context.Context, name string) (time.Time, error) {
	now := s.clock()
	if _, err := s.apply(ctx, &raftstore.ProjectCreate{Now: now.UnixNano(), Name: name}); err != nil {
		return time.Time{}, err
	}
	return now, nil
}

// DeleteProject removes an empty project that no token or worker names.
func (s *Service) DeleteProject(ctx context.Context, name string) error {
	_, err := s.apply(ctx, &raftstore.ProjectDelete{Now: s.stamp(), Name: name})
	return err
}
