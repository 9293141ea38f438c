package freezer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/jsonbody"
	"github.com/croftfarm/croft/raftstore"
)

// document is a Freezer document: decoded JSON with numbers kept exact.
type document = map[string]any

// Defaults of a new session (freezer-api's SessionDoc.create).
const (
	defaultHoldOff = 30
	defaultStatus  = "active"
	// unsetTime is the sqlalchemy driver's value of a time never set.
	unsetTime = -1
)

// userIDPattern is what the session schema wants of user_id and project_id.
var userIDPattern = regexp.MustCompile(`^[\w-]+$`)

// decode reads a JSON object; anything that is not JSON is ErrMalformed
// (753), JSON that is not an object, or nests deeper than MaxDepth, a 400.
func decode(body []byte) (document, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrMalformed)
	}
	d, ok := v.(document)
	if !ok {
		return nil, apierr.Bad("the body must be a JSON object")
	}
	if jsonbody.Depth(body) > MaxDepth+1 { // MaxDepth levels below the body's object
		return nil, apierr.Bad("the body nests deeper than %d levels", MaxDepth)
	}
	if jsonbody.HasNUL(d) {
		// A NUL would reach a job's command or a name and be refused
		// later, after part of the request was done.
		return nil, apierr.Bad("a NUL byte in the body")
	}
	return d, nil
}

// integer returns v as an int64 when it is a JSON integer.
func integer(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// Schedule fields and their rules (freezer-api's schedule_properties;
// additionalProperties is false).
var (
	scheduleIntegers = []string{"time_created", "time_started", "time_ended", "current_pid"}
	scheduleEnums    = map[string][]string{
		"event":  {"", "stop", "start", "abort", "remove"},
		"status": {"", "completed", "stop", "scheduled", "running", "aborting", "removed"},
		"result": {"", "success", "fail", "aborted"},
	}
	isoDate         = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$`)
	scheduleDates   = []string{"schedule_date", "schedule_start_date", "schedule_end_date"}
	intervalPattern = regexp.MustCompile(`^(continuous|(\d+ +(weeks|days|hours|minutes|seconds)))$`)
	yearPattern     = regexp.MustCompile(`^\d{4}$`)
	scheduleStrings = []string{"schedule_month", "schedule_day", "schedule_week", "schedule_day_of_week", "schedule_hour", "schedule_minute", "schedule_second"}
	// scheduleAllowed is every property above (filled by init).
	scheduleAllowed = map[string]bool{"schedule_interval": true, "schedule_year": true}
)

func init() {
	for _, k := range scheduleIntegers {
		scheduleAllowed[k] = true
	}
	for k := range scheduleEnums {
		scheduleAllowed[k] = true
	}
	for _, k := range append(append([]string{}, scheduleDates...), scheduleStrings...) {
		scheduleAllowed[k] = true
	}
}

// checkSchedule checks a schedule against schedule_properties.
func checkSchedule(v any) error {
	s, ok := v.(document)
	if !ok {
		return apierr.Bad("schedule must be an object")
	}
	for k := range s {
		if !scheduleAllowed[k] {
			return apierr.Bad("schedule: unknown property %q", apierr.Truncate(k, 64))
		}
	}
	for _, k := range scheduleIntegers {
		if x, ok := s[k]; ok {
			if _, isInt := integer(x); !isInt {
				return apierr.Bad("schedule.%s must be an integer", k)
			}
		}
	}
	for k, allowed := range scheduleEnums {
		if x, ok := s[k]; ok {
			str, isStr := x.(string)
			if !isStr || !contains(allowed, str) {
				return apierr.Bad("schedule.%s must be one of %q", k, allowed)
			}
		}
	}
	str := func(k string, re *regexp.Regexp) error {
		x, ok := s[k]
		if !ok {
			return nil
		}
		v, isStr := x.(string)
		if !isStr || re != nil && !re.MatchString(v) {
			return apierr.Bad("schedule.%s: %v is not valid", k, apierr.Truncate(fmt.Sprint(x), 64))
		}
		return nil
	}
	for _, k := range scheduleDates {
		if err := str(k, isoDate); err != nil {
			return err
		}
	}
	for _, k := range scheduleStrings {
		if err := str(k, nil); err != nil {
			return err
		}
	}
	if err := str("schedule_interval", intervalPattern); err != nil {
		return err
	}
	return str("schedule_year", yearPattern)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkSession checks the fields of a session document the schemas type:
// schedule (required unless patch), session_tag and hold_off integers,
// description a string, jobs an object.
func checkSession(d document, patch bool) error {
	sched, ok := d["schedule"]
	switch {
	case ok:
		if err := checkSchedule(sched); err != nil {
			return err
		}
	case !patch:
		return apierr.Bad("schedule is required")
	}
	for _, k := range []string{"session_tag", "hold_off", "time_started", "time_ended", "time_start", "time_end"} {
		if x, ok := d[k]; ok {
			if _, isInt := integer(x); !isInt {
				return apierr.Bad("%s must be an integer", k)
			}
		}
	}
	if x, ok := d["description"]; ok {
		if _, isStr := x.(string); !isStr {
			return apierr.Bad("description must be a string")
		}
	}
	if x, ok := d["jobs"]; ok {
		if _, isMap := x.(document); !isMap {
			return apierr.Bad("jobs must be an object")
		}
	}
	return nil
}

// setDefaults fills what freezer-api's SessionDoc.create and the
// sqlalchemy driver add to a session the client did not give.
func setDefaults(d document) {
	def := map[string]any{
		"session_tag": json.Number("0"), "hold_off": json.Number(strconv.Itoa(defaultHoldOff)),
		"status": defaultStatus, "result": "", "last_start": "", "description": "",
		"time_started": json.Number(strconv.Itoa(unsetTime)), "time_ended": json.Number(strconv.Itoa(unsetTime)),
		"time_start": json.Number(strconv.Itoa(unsetTime)), "time_end": json.Number(strconv.Itoa(unsetTime)),
	}
	for k, v := range def {
		if _, ok := d[k]; !ok {
			d[k] = v
		}
	}
	if _, ok := d["schedule"]; !ok {
		d["schedule"] = document{}
	}
}

// docOf reads a core session as a Freezer document: its stored doc (a
// group session of another dialect has none: it gets the defaults, its
// name as the description), with the identity fields the core owns.
func docOf(x *raftstore.SessionView) document {
	d, err := decode(x.Doc)
	if err != nil {
		d = document{"description": x.Name}
	}
	setDefaults(d)
	d["session_id"] = x.ID
	d["project_id"] = x.Project
	if _, ok := d["user_id"].(string); !ok {
		d["user_id"] = defaultUser
	}
	if _, ok := d["_version"]; !ok {
		d["_version"] = json.Number("1")
	}
	return d
}

// coreFields maps a Freezer document to what the core keeps apart from
// the doc: the session's name, its description's first line, bounded.
// It is the one place the two models meet.
func coreFields(d document) (name string) {
	desc, _ := d["description"].(string)
	desc, _, _ = strings.Cut(desc, "\n")
	desc = strings.TrimRight(desc, "\r")
	desc = strings.ToValidUTF8(strings.ReplaceAll(desc, "\x00", ""), "")
	for len(desc) > raftstore.MaxNameBytes {
		desc = strings.ToValidUTF8(desc[:raftstore.MaxNameBytes], "")
	}
	return desc
}

// encode renders a document for the core's Doc, refusing one larger than
// the core keeps (413).
func encode(d document) ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the session: %v", raftstore.ErrInternal, err)
	}
	if len(b) > raftstore.MaxSessionDoc {
		return nil, fmt.Errorf("%w: the session document is %d bytes, the limit is %d", raftstore.ErrTooLarge, len(b), raftstore.MaxSessionDoc)
	}
	return b, nil
}

// flatten collects every key of d at any depth with its scalar values,
// as freezer-api flattens a row before a search: nested keys in schedule
// or jobs match too. Lists are walked; their elements keep no key.
func flatten(d document) map[string][]any {
	out := map[string][]any{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(k, e)
			}
		case []any:
			for _, e := range x {
				walk(key, e)
			}
		default:
			if key != "" {
				out[key] = append(out[key], x)
			}
		}
	}
	walk("", d)
	return out
}

// equal compares two decoded JSON scalars; numbers by value (50 == 50.0,
// as Python compares them).
func equal(a, b any) bool {
	na, aNum := a.(json.Number)
	nb, bNum := b.(json.Number)
	if aNum && bNum {
		if na == nb {
			return true
		}
		fa, errA := na.Float64()
		fb, errB := nb.Float64()
		return errA == nil && errB == nil && fa == fb
	}
	if aNum || bNum {
		return false
	}
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}
