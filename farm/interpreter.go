package farm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// An interpreter is a named way to run code on a host: sh, bash, python3...
// Agents detect some on their PATH and advertise them with their absolute
// paths; admins configure more on the coordinator, each a command template
// that says how to run code with one of the detected ones.
//
// A template is one shell command line with placeholders:
//
//	{interpreter}  the absolute path of the detected interpreter the
//	               template uses, on the host that runs it
//	{file}         the path of a file, on that host, that holds the code
//	{code}         the code itself
//
// Each value is inserted as one single-quoted shell word, so a path with
// spaces or code with quotes stays one argument. "{{" and "}}" stand for a
// literal brace; any other brace is an error, so a typo is refused when the
// template is stored rather than when code first runs.
const (
	PlaceholderInterpreter = "interpreter"
	PlaceholderFile        = "file"
	PlaceholderCode        = "code"
)

// DefaultInterpreterTemplate is how a detected interpreter that no
// template configures runs code: the file of code as its only argument.
const DefaultInterpreterTemplate = "{interpreter} {file}"

// Bounds of interpreter names and templates.
const (
	MaxInterpreterName = 64      // bytes, as the agent's
	MaxInterpreterPath = 4096    // bytes, Linux's PATH_MAX
	MaxTemplateBytes   = 4 << 10 // a template
	maxPlaceholders    = 64      // in one template
)

// Errors of interpreter names and templates.
var (
	// ErrInterpreterName means a name is empty, too long or holds a
	// character other than letters, digits, '.', '_', '+' and '-'.
	ErrInterpreterName = errors.New("invalid interpreter name")
	// ErrTemplate means a template is too long, holds a NUL byte or a
	// line break, or an unknown or unclosed placeholder.
	ErrTemplate = errors.New("invalid interpreter template")
)

// CheckInterpreterName checks an interpreter's name: 1 to
// MaxInterpreterName letters, digits, '.', '_', '+' or '-' (a name is
// used in URLs and shell words).
func CheckInterpreterName(name string) error {
	if name == "" || len(name) > MaxInterpreterName {
		return fmt.Errorf("%w: %q: 1 to %d bytes", ErrInterpreterName, truncate(name, 40), MaxInterpreterName)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '+', r == '-':
		default:
			return fmt.Errorf("%w: %q: only letters, digits, '.', '_', '+' and '-'", ErrInterpreterName, truncate(name, 40))
		}
	}
	return nil
}

// CheckTemplate checks a template: its size, no NUL or line break, and
// every placeholder known and closed.
func CheckTemplate(tmpl string) error {
	_, err := parseTemplate(tmpl, interpreterGrammar)
	return err
}

// Expand fills a template's placeholders with vals (by placeholder name),
// each as one single-quoted shell word. A placeholder without a value is
// an error: the caller knows which ones it can fill.
func Expand(tmpl string, vals map[string]string) (string, error) {
	parts, err := parseTemplate(tmpl, interpreterGrammar)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		if !p.hole {
			b.WriteString(p.text)
			continue
		}
		v, ok := vals[p.text]
		if !ok {
			return "", fmt.Errorf("%w: no value for {%s}", ErrTemplate, p.text)
		}
		b.WriteString(ShellQuote(v))
	}
	return b.String(), nil
}

// Placeholders returns the distinct placeholders a valid template uses, in
// order of first use.
func Placeholders(tmpl string) []string {
	parts, _ := parseTemplate(tmpl, interpreterGrammar)
	var out []string
	for _, p := range parts {
		if p.hole && !slices.Contains(out, p.text) {
			out = append(out, p.text)
		}
	}
	return out
}

// ShellQuote returns s as one single-quoted POSIX shell word.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// templatePart is literal text, or a placeholder's name (hole).
type templatePart struct {
	text string
	hole bool
}

// grammar is what one kind of template may hold: its placeholders, its
// size, and the error that says it is wrong.
type grammar struct {
	err      error
	maxBytes int
	names    []string
}

// interpreterGrammar is that of interpreter templates.
var interpreterGrammar = grammar{ErrTemplate, MaxTemplateBytes, []string{PlaceholderInterpreter, PlaceholderFile, PlaceholderCode}}

// placeholderList names a grammar's placeholders for an error message.
func (g grammar) placeholderList() string {
	l := make([]string, len(g.names))
	for i, n := range g.names {
		l[i] = "{" + n + "}"
	}
	return strings.Join(l, ", ")
}

func parseTemplate(tmpl string, g grammar) ([]templatePart, error) {
	if len(tmpl) > g.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", g.err, len(tmpl), g.maxBytes)
	}
	if strings.TrimSpace(tmpl) == "" {
		return nil, fmt.Errorf("%w: empty", g.err)
	}
	if strings.ContainsAny(tmpl, "\x00\r\n") {
		return nil, fmt.Errorf("%w: a NUL byte or a line break", g.err)
	}
	var parts []templatePart
	var lit strings.Builder
	holes := 0
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		switch {
		case c == '{' && i+1 < len(tmpl) && tmpl[i+1] == '{', c == '}' && i+1 < len(tmpl) && tmpl[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(tmpl[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%w: '{' at byte %d is not closed (write {{ for a brace)", g.err, i)
			}
			name := tmpl[i+1 : i+1+end]
			if !slices.Contains(g.names, name) {
				return nil, fmt.Errorf("%w: unknown placeholder {%s}: one of %s (write {{ for a brace)",
					g.err, truncate(name, 40), g.placeholderList())
			}
			if holes++; holes > maxPlaceholders {
				return nil, fmt.Errorf("%w: more than %d placeholders", g.err, maxPlaceholders)
			}
			if lit.Len() > 0 {
				parts = append(parts, templatePart{text: lit.String()})
				lit.Reset()
			}
			parts = append(parts, templatePart{text: name, hole: true})
			i += 1 + end
		case c == '}':
			return nil, fmt.Errorf("%w: '}' at byte %d closes nothing (write }} for a brace)", g.err, i)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, templatePart{text: lit.String()})
	}
	return parts, nil
}

// truncate cuts s to at most n bytes, for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
