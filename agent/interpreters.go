package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/croftfarm/croft/api/client"
)

// DefaultInterpreters are the interpreters an agent looks for on its PATH
// and advertises when it registers.
var DefaultInterpreters = []string{"sh", "bash", "zsh", "python3", "python", "perl", "ruby", "node", "Rscript", "pwsh"}

// ErrBadInterpreter means a configured interpreter has a bad name or path.
var ErrBadInterpreter = errors.New("bad interpreter")

// ParseInterpreter parses a "name=path" flag value.
func ParseInterpreter(s string) (client.Interpreter, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return client.Interpreter{}, fmt.Errorf("%w: %q is not name=path", ErrBadInterpreter, s)
	}
	return client.Interpreter{Name: strings.TrimSpace(name), Path: strings.TrimSpace(path)}, nil
}

// interpreters returns what the agent advertises: the configured ones
// (checked, a relative path looked up on pathList), then those of names
// found on pathList that none of them replaces, at most
// client.MaxInterpreters.
func interpreters(pathList string, names []string, configured []client.Interpreter) ([]client.Interpreter, error) {
	if len(configured) > client.MaxInterpreters {
		return nil, fmt.Errorf("%w: %d configured, at most %d", ErrBadInterpreter, len(configured), client.MaxInterpreters)
	}
	out := make([]client.Interpreter, 0, len(configured)+len(names))
	seen := map[string]bool{}
	for _, in := range configured {
		if !validInterpreterName(in.Name) {
			return nil, fmt.Errorf("%w: name %q: 1 to %d letters, digits, '.', '_', '+' or '-'", ErrBadInterpreter, in.Name, client.MaxInterpreterName)
		}
		if seen[in.Name] {
			return nil, fmt.Errorf("%w: %s given twice", ErrBadInterpreter, in.Name)
		}
		path := in.Path
		if !filepath.IsAbs(path) {
			if strings.ContainsRune(path, '/') || path == "" {
				return nil, fmt.Errorf("%w: %s: path %q is neither absolute nor a command name", ErrBadInterpreter, in.Name, path)
			}
			found, ok := lookPath(pathList, path)
			if !ok {
				return nil, fmt.Errorf("%w: %s: %q not found on PATH", ErrBadInterpreter, in.Name, path)
			}
			path = found
		}
		if len(path) > client.MaxInterpreterPath || !executable(path) {
			return nil, fmt.Errorf("%w: %s: %q is not an executable file (of at most %d bytes of path)", ErrBadInterpreter, in.Name, path, client.MaxInterpreterPath)
		}
		seen[in.Name] = true
		out = append(out, client.Interpreter{Name: in.Name, Path: path})
	}
	for _, name := range names {
		if seen[name] || len(out) >= client.MaxInterpreters {
			continue
		}
		if path, ok := lookPath(pathList, name); ok && len(path) <= client.MaxInterpreterPath {
			seen[name] = true
			out = append(out, client.Interpreter{Name: name, Path: path})
		}
	}
	return out, nil
}

// lookPath finds an executable named name in the absolute directories of
// pathList, in order (relative entries would depend on the job's
// directory). The path is as found, links not resolved.
func lookPath(pathList, name string) (string, bool) {
	for _, dir := range filepath.SplitList(pathList) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, name); executable(p) {
			return p, true
		}
	}
	return "", false
}

// executable reports whether path is a regular file someone may execute.
func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func validInterpreterName(name string) bool {
	if name == "" || len(name) > client.MaxInterpreterName {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '+', r == '-':
		default:
			return false
		}
	}
	return true
}
