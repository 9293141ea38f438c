package freezer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"

	"github.com/croftfarm/croft/api/apierr"
)

// Limits of a Freezer job document (413, or 400, past them).
const (
	// MaxActions bounds a job's job_actions.
	MaxActions = 32
	// MaxRetries bounds an action's max_retries (tries in all), and
	// MaxRetryInterval its max_retries_interval (seconds).
	MaxRetries       = 100
	MaxRetryInterval = 24 * 3600
	// MaxJobIDBytes bounds a client's job_id and client_id.
	MaxJobIDBytes = 128
)

// Defaults of freezer-scheduler for an action that does not say.
const (
	defaultTries         = 1
	defaultRetryInterval = 60
)

// jobFields are the properties job_schema allows at the top level
// (additionalProperties is false). hidden is Croft's own bookkeeping
// kept in the stored document and never shown nor taken from a client.
var (
	jobFields = map[string]bool{
		"job_actions": true, "job_schedule": true, "job_id": true, "client_id": true,
		"user_id": true, "project_id": true, "session_id": true, "session_tag": true,
		"session_name": true, "description": true, "_version": true,
		"action_defaults": true, "user_credentials": true,
	}
	// clientIDPattern is job_schema's pattern for client_id, with dots:
	// a client is an agent's host name, and host names have them.
	clientIDPattern = regexp.MustCompile(`^[\w.-]+$`)
	// actionKey is what a freezer_action key must look like to become a
	// freezer-agent flag.
	actionKey = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// hiddenRuns is the stored job document's list of the job's runs (the
// core executions' ids, newest last): the job's state is read from the
// newest.
const hiddenRuns = "_croft_runs"

// MaxRuns is how many of a job's runs are kept (the older ones are
// forgotten, with their logs, when a new one starts).
const MaxRuns = 5

// checkJob checks a job document against freezer-api's job_schema:
// the known properties only, job_actions a list of actions, job_schedule
// a schedule, ids of the schema's pattern. A full document (not partial)
// needs job_actions, job_schedule and client_id; job_id and user_id the
// server fills.
func checkJob(d document, partial bool) error {
	for k := range d {
		if !jobFields[k] {
			return apierr.Bad("unknown property %q (the job schema allows no other)", apierr.Truncate(k, 64))
		}
	}
	if !partial {
		for _, k := range []string{"job_actions", "job_schedule", "client_id"} {
			if _, ok := d[k]; !ok {
				if k == "client_id" {
					return apierr.Bad("client_id is required: it names the agent (host) that runs the job")
				}
				return apierr.Bad("%s is required", k)
			}
		}
	}
	if v, ok := d["job_schedule"]; ok {
		if err := checkSchedule(v); err != nil {
			return fmt.Errorf("job_schedule: %w", err)
		}
	}
	for _, k := range []string{"job_id", "client_id"} {
		v, ok := d[k]
		if !ok {
			continue
		}
		s, isStr := v.(string)
		re := userIDPattern
		if k == "client_id" {
			re = clientIDPattern
		}
		if !isStr || len(s) > MaxJobIDBytes || !re.MatchString(s) {
			return apierr.Bad("%s: a string of letters, digits, '_' and '-' (at most %d bytes) expected", k, MaxJobIDBytes)
		}
	}
	for _, k := range []string{"description", "session_name"} {
		if v, ok := d[k]; ok {
			if _, isStr := v.(string); !isStr {
				return apierr.Bad("%s must be a string", k)
			}
		}
	}
	if v, ok := d["session_id"]; ok && v != nil {
		if _, isStr := v.(string); !isStr {
			return apierr.Bad("session_id must be a string or null")
		}
	}
	if v, ok := d["session_tag"]; ok {
		if _, isInt := integer(v); !isInt {
			return apierr.Bad("session_tag must be an integer")
		}
	}
	for _, k := range []string{"action_defaults", "user_credentials"} {
		if v, ok := d[k]; ok {
			if _, isMap := v.(document); !isMap {
				return apierr.Bad("%s must be an object", k)
			}
		}
	}
	if v, ok := d["job_actions"]; ok {
		return checkActions(v)
	}
	return nil
}

// checkActions checks job_actions: a list of at most MaxActions items,
// each with a freezer_action object whose keys can be flags, and
// integer tries and interval within bounds.
func checkActions(v any) error {
	list, ok := v.([]any)
	if !ok {
		return apierr.Bad("job_actions must be a list")
	}
	if len(list) > MaxActions {
		return apierr.Bad("job_actions has %d actions, the limit is %d", len(list), MaxActions)
	}
	for i, e := range list {
		a, ok := e.(document)
		if !ok {
			return apierr.Bad("job_actions[%d] must be an object", i)
		}
		fa, ok := a["freezer_action"].(document)
		if !ok {
			return apierr.Bad("job_actions[%d].freezer_action must be an object", i)
		}
		if err := checkFreezerAction(fa); err != nil {
			return fmt.Errorf("job_actions[%d].freezer_action: %w", i, err)
		}
		for k, limit := range map[string]int64{"max_retries": MaxRetries, "max_retries_interval": MaxRetryInterval} {
			x, ok := a[k]
			if !ok {
				continue
			}
			n, isInt := integer(x)
			if !isInt || n < 0 || n > limit {
				return apierr.Bad("job_actions[%d].%s: an integer in [0, %d] expected", i, k, limit)
			}
		}
		if x, ok := a["mandatory"]; ok {
			if _, isBool := x.(bool); !isBool {
				return apierr.Bad("job_actions[%d].mandatory must be a boolean", i)
			}
		}
	}
	return nil
}

// checkFreezerAction checks an action's parameters: each key a flag
// name, action and mode of the schema's pattern, an exec action's
// command a string.
func checkFreezerAction(fa document) error {
	for k, v := range fa {
		if !actionKey.MatchString(k) || len(k) > 64 {
			return apierr.Bad("%q is not an action parameter name (letters, digits, '_')", apierr.Truncate(k, 64))
		}
		switch v.(type) {
		case string, json.Number, bool, nil:
		default:
			return apierr.Bad("%s: a string, number or boolean expected", k)
		}
	}
	for _, k := range []string{"action", "mode"} {
		if v, ok := fa[k]; ok {
			s, isStr := v.(string)
			if !isStr || !userIDPattern.MatchString(s) {
				return apierr.Bad("%s: a word of letters, digits, '_' and '-' expected", k)
			}
		}
	}
	if actionName(fa) == "exec" {
		if c, ok := fa["command"].(string); !ok || c == "" {
			return apierr.Bad("an exec action needs a command (a string)")
		}
	}
	return nil
}

// actionName is a freezer_action's action; freezer-agent's default is
// backup.
func actionName(fa document) string {
	if s, ok := fa["action"].(string); ok && s != "" {
		return s
	}
	return "backup"
}

// newJobDoc completes a new job's document as freezer-api's JobDoc.create
// does: the schedule's times, each action's id (drawn by ids), the
// action_defaults copied into every action that lacks them, and the
// identity fields.
func newJobDoc(d document, jobID, project, user string, now int64, ids func() (string, error)) error {
	sched, _ := d["job_schedule"].(document)
	if sched == nil {
		sched = document{}
	}
	sched["time_created"] = json.Number(strconv.FormatInt(now, 10))
	for _, k := range []string{"time_started", "time_ended"} {
		if _, ok := sched[k]; !ok {
			sched[k] = json.Number(strconv.Itoa(unsetTime))
		}
	}
	d["job_schedule"] = sched
	defaults, _ := d["action_defaults"].(document)
	delete(d, "action_defaults")
	actions, _ := d["job_actions"].([]any)
	for _, e := range actions {
		a := e.(document) // checkJob: objects
		fa := a["freezer_action"].(document)
		for _, k := range sortedKeys(defaults) {
			if _, ok := fa[k]; !ok {
				fa[k] = defaults[k]
			}
		}
		if _, ok := a["action_id"].(string); !ok {
			id, err := ids()
			if err != nil {
				return err
			}
			a["action_id"] = id
		}
		a["user_id"], a["project_id"] = user, project
	}
	d["job_id"], d["project_id"], d["user_id"] = jobID, project, user
	if _, ok := d["description"]; !ok {
		d["description"] = ""
	}
	return nil
}

func sortedKeys(m document) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// runsOf returns the ids of a stored job document's runs, oldest first.
func runsOf(d document) []string {
	list, _ := d[hiddenRuns].([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// setRuns stores a job's runs in its document.
func setRuns(d document, runs []string) {
	list := make([]any, len(runs))
	for i, r := range runs {
		list[i] = r
	}
	d[hiddenRuns] = list
}

// schedule returns a document's schedule object (key k), made if absent.
func schedule(d document, k string) document {
	s, ok := d[k].(document)
	if !ok {
		s = document{}
		d[k] = s
	}
	return s
}

// str returns d[k] as a string ("" if it is not one).
func str(d document, k string) string {
	s, _ := d[k].(string)
	return s
}

// num returns an epoch-seconds or counter value as a JSON number.
func num(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }
