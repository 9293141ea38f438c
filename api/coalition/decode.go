package coalition

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/croftfarm/croft/api/apierr"
	farmmodel "github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
)

// bad returns a 400 error for the client to fix.
func bad(format string, args ...any) error { return apierr.Bad(format, args...) }

// wrapf prefixes err with a context, keeping its sentinel for the edge.
func wrapf(err error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// Coalition's defaults for PUT /api/jobs (api-dialects.md §2.3).
const (
	defaultTimeout  = 1000
	defaultPriority = 1000
	defaultRetry    = 10
)

// parseBody decodes a JSON body into v. An empty body is Coalition's {}.
func parseBody(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return bad("malformed JSON: %v", err)
	}
	if dec.More() {
		return bad("malformed JSON: trailing data after the value")
	}
	return nil
}

// parseObject decodes a JSON object into its raw members; an empty body or
// null is an empty object. (json.Unmarshal, not parseBody's decoder: the
// members stay raw, so numbers need no UseNumber, and it neither copies
// the body nor allocates a reader, once per frame of a large job.)
func parseObject(body []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	t := bytes.TrimSpace(body)
	if len(t) > 0 {
		if err := json.Unmarshal(t, &m); err != nil {
			return nil, bad("malformed JSON: %v", err)
		}
	}
	if m == nil && len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		return nil, bad("a JSON object is expected")
	}
	return m, nil
}

func asInt(name string, raw json.RawMessage) (int64, error) {
	if i, ok := plainInt(raw); ok {
		return i, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, bad("%s: an integer is expected, got %s", name, raw)
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, bad("%s: an integer is expected, got %s", name, raw)
	}
	return int64(f), nil
}

func asString(name string, raw json.RawMessage) (string, error) {
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", bad("%s: a string is expected, got %s", name, raw)
	}
	return s, nil
}

// plainString decodes a JSON string without escapes or control characters,
// in valid UTF-8: what json.Unmarshal would return, without its cost (a
// 100,000-frame job has a few hundred thousand of them). ok is false for
// anything else, which the caller decodes the general way.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}

// plainInt decodes a JSON integer without fraction or exponent, as
// json.Number.Int64 would; ok is false for anything else.
func plainInt(raw []byte) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	i, err := strconv.ParseInt(string(raw), 10, 64)
	return i, err == nil
}

// countElements counts the elements of a JSON array without decoding it,
// stopping once it passed max. Malformed JSON counts as it comes: the
// decoding that follows reports it.
func countElements(raw []byte, max int) int {
	depth, commas := 0, 0
	inString, escaped, any := false, false, false
	for _, c := range raw {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth == 1 {
				continue // the array's own bracket
			}
		case ']', '}':
			depth--
			if depth == 0 {
				continue
			}
		case ',':
			if depth == 1 {
				if commas++; commas >= max {
					return commas + 1
				}
				continue
			}
		}
		any = true
	}
	if !any {
		return 0
	}
	return commas + 1
}

// asBool accepts true/false and Coalition's 0/1.
func asBool(name string, raw json.RawMessage) (bool, error) {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, nil
	}
	if i, err := asInt(name, raw); err == nil && (i == 0 || i == 1) {
		return i == 1, nil
	}
	return false, bad("%s: true, false, 0 or 1 is expected, got %s", name, raw)
}

// parseID reads a job id from a JSON number or a numeric string (the web UI
// sends ids taken from the page as strings).
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || id < 0 {
		return 0, bad("job id %q is not a non-negative integer", s)
	}
	return id, nil
}

func asID(name string, raw json.RawMessage) (int64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return parseID(s)
	}
	id, err := asInt(name, raw)
	if err == nil && id < 0 {
		err = bad("%s: %d is negative", name, id)
	}
	return id, err
}

// asIDList reads [1, 2] or Coalition's "1 2 3" / "1,2,3" string form.
func asIDList(name string, raw json.RawMessage) ([]int64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		var out []int64
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			id, err := parseID(f)
			if err != nil {
				return nil, err
			}
			out = append(out, id)
		}
		return out, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, bad("%s: a list of job ids is expected, got %s", name, raw)
	}
	out := make([]int64, 0, len(items))
	for _, it := range items {
		id, err := asID(name, it)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// parseIDBody reads a body that is a JSON list of job ids.
func parseIDBody(body []byte) ([]int64, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil
	}
	if body[0] != '[' {
		return nil, bad("a JSON list of job ids is expected")
	}
	return asIDList("ids", body)
}

// parseNameBody reads a body that is a JSON list of worker names.
func parseNameBody(body []byte) ([]string, error) {
	var names []string
	if err := parseBody(body, &names); err != nil {
		return nil, bad("a JSON list of worker names is expected")
	}
	return names, nil
}

// jobAttrNames are the attributes a client may set on a job.
var jobAttrNames = []string{
	"parent", "title", "command", "dir", "environment", "state", "paused", "timeout",
	"priority", "retry", "affinity", "user", "url", "progress_pattern", "dependencies",
}

// parseJobAttrs reads job attributes strictly: an unknown or read-only
// attribute, or a value of the wrong type, is an error.
func parseJobAttrs(m map[string]json.RawMessage) (raftstore.JobPatch, error) {
	var p raftstore.JobPatch
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad attribute deterministically
	for _, k := range keys {
		raw := m[k]
		var err error
		str := func(dst **string) {
			var s string
			if s, err = asString(k, raw); err == nil {
				*dst = &s
			}
		}
		switch k {
		case "parent":
			var id int64
			if id, err = asID(k, raw); err == nil {
				p.Parent = &id
			}
		case "title":
			str(&p.Title)
		case "command":
			str(&p.Command)
		case "dir":
			str(&p.Dir)
		case "environment":
			str(&p.Environment)
			if err == nil {
				env := fromCoalitionEnv(*p.Environment)
				p.Env = &env
			}
		case "affinity":
			str(&p.Affinity)
		case "user":
			str(&p.User)
		case "url":
			str(&p.URL)
		case "progress_pattern":
			str(&p.ProgressPattern)
			if err == nil && *p.ProgressPattern != "" {
				if _, _, perr := farmmodel.ProgressRegexp(*p.ProgressPattern); perr != nil {
					err = bad("progress_pattern: %v", perr)
				}
			}
		case "state":
			// Still in Coalition's words: an edit turns it into the
			// neutral state (fromCoalitionState), a create reads it.
			str(&p.State)
			if err == nil {
				up := strings.ToUpper(*p.State)
				p.State = &up
			}
		case "paused":
			var b bool
			if b, err = asBool(k, raw); err == nil {
				p.Paused = &b
			}
		case "timeout":
			var t int64
			if t, err = asInt(k, raw); err == nil {
				if t < 0 {
					err = bad("timeout: %d is negative (0 means none)", t)
				}
				p.Timeout = &t
			}
		case "priority":
			var n int64
			if n, err = asInt(k, raw); err == nil {
				v := ClampPriority(int(max(min(n, math.MaxInt32), math.MinInt32)))
				p.Priority = &v
			}
		case "retry":
			var n int64
			if n, err = asInt(k, raw); err == nil {
				if n < 0 || n > math.MaxInt32 {
					err = bad("retry: %d is out of range", n)
				}
				v := int(n)
				p.Retry = &v
			}
		case "dependencies":
			var ids []int64
			if ids, err = asIDList(k, raw); err == nil {
				p.Dependencies = &ids
			}
		default:
			err = bad("unknown or read-only job attribute %q (settable: %s)", k, strings.Join(jobAttrNames, ", "))
		}
		if err != nil {
			return raftstore.JobPatch{}, err
		}
	}
	return p, nil
}

// specFromPatch turns PUT /api/jobs attributes into a JobSpec with
// Coalition's defaults.
func specFromPatch(p raftstore.JobPatch) (raftstore.JobSpec, error) {
	s := raftstore.JobSpec{
		Timeout:  defaultTimeout,
		Priority: ClampPriority(defaultPriority),
		Retry:    defaultRetry,
	}
	str := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	if p.Parent != nil {
		s.Parent = *p.Parent
	}
	str(&s.Title, p.Title)
	str(&s.Command, p.Command)
	str(&s.Dir, p.Dir)
	str(&s.Environment, p.Environment)
	if p.Env != nil {
		s.Env = *p.Env
	}
	str(&s.Affinity, p.Affinity)
	str(&s.User, p.User)
	str(&s.URL, p.URL)
	str(&s.ProgressPattern, p.ProgressPattern)
	if p.Paused != nil {
		s.Paused = *p.Paused
	}
	if p.State != nil {
		// parseJobAttrs leaves the state in Coalition's words.
		switch *p.State {
		case "PAUSED":
			s.Paused = true
		case "WAITING", "PENDING", "":
		default:
			return s, bad("state %q: a new job is WAITING or PAUSED", *p.State)
		}
	}
	if p.Timeout != nil {
		s.Timeout = *p.Timeout
	}
	if p.Priority != nil {
		s.Priority = *p.Priority
	}
	if p.Retry != nil {
		s.Retry = *p.Retry
	}
	if p.Dependencies != nil {
		s.Dependencies = *p.Dependencies
	}
	return s, nil
}

// parseWorkerAttrs reads POST /api/workers attributes for one worker.
func parseWorkerAttrs(name string, m map[string]json.RawMessage) (raftstore.WorkerPatch, error) {
	var p raftstore.WorkerPatch
	for k, raw := range m {
		switch k {
		case "affinity":
			s, err := asString(k, raw)
			if err == nil {
				err = raftstore.CheckAffinity("worker "+name+" affinity", s)
			}
			if err != nil {
				return p, err
			}
			p.Affinity = &s
		case "active":
			b, err := asBool(k, raw)
			if err != nil {
				return p, err
			}
			p.Active = &b
		default:
			return p, bad("worker %q: unknown or read-only attribute %q (settable: affinity, active)", name, k)
		}
	}
	return p, nil
}
