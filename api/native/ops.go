package native

import (
	"context"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// Applier proposes Raft commands; requests reach it on the leader only.
type Applier interface {
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
}

// ops are the typed write operations of these routes: the only place in
// the package that builds Raft commands, stamping the leader's time. The
// service layer takes them over when it lands; handlers call only these.
type ops struct {
	store Applier
	now   func() time.Time
}

// setInterpreter configures (or replaces) interpreter name.
func (o ops) setInterpreter(ctx context.Context, name, template, uses string) error {
	_, err := o.store.Apply(ctx, &raftstore.InterpreterSet{Now: o.now().UnixNano(), Name: name, Template: template, Uses: uses})
	return err
}

// deleteInterpreter removes configured interpreter name.
func (o ops) deleteInterpreter(ctx context.Context, name string) error {
	_, err := o.store.Apply(ctx, &raftstore.InterpreterDelete{Now: o.now().UnixNano(), Name: name})
	return err
}
