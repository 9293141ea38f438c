package where

import (
	"context"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// whereTestRow is a job row as the handlers would expose it.
var whereTestRow = map[string]any{
	"id":        int64(2),
	"parent":    int64(0),
	"title":     "shot_frame_12",
	"command":   "echo 'hi' && exit 0",
	"state":     "WAITING",
	"user":      "Bobby",
	"paused":    int64(0),
	"priority":  int64(100),
	"progress":  0.5,
	"worker":    nil,
	"affinity":  "",
	"timeout":   int64(1000),
	"numtext":   "42",
	"big":       int64(math.MaxInt64),
	"start_int": 7,    // a Go int, accepted too
	"flag":      true, // a bool, read as 1
	"f32":       float32(1.5),
	"nan":       math.NaN(),
	"bytes":     []byte("x"), // unsupported type
}

func whereRowOf(m map[string]any) Row {
	return func(c string) (any, bool) {
		v, ok := m[c]
		return v, ok
	}
}

func TestWhereMatch(t *testing.T) {
	row := whereRowOf(whereTestRow)
	tests := []struct {
		clause string
		want   bool
	}{
		// Typical UI clauses.
		{"", true},
		{"   -- just a comment\n", true},
		{"state='WAITING' AND user LIKE 'bob%'", true},
		{"state='WAITING' AND user LIKE 'alice%'", false},
		{"id IN (1,2,3)", true},
		{"id IN (4,5)", false},
		{"id NOT IN (4,5)", true},
		{"priority >= 100 OR (paused = 1 AND NOT state = 'FINISHED')", true},
		{"priority > 100 OR (paused = 1 AND NOT state = 'FINISHED')", false},
		{"priority > 100 OR (paused = 0 AND NOT state = 'FINISHED')", true},
		{"title LIKE '%frame_1%'", true},
		{"title LIKE '%frame_2%'", false},
		{"title NOT LIKE '%frame_2%'", true},

		// Keywords are case-insensitive; quoted identifiers.
		{"State = 'WAITING' and \"user\" like 'BOB%' And `id` = 2", true},
		{"[title] = 'shot_frame_12'", true},
		{"\"STATE\" = 'WAITING'", true},

		// Literals.
		{"'it''s' = 'it' || '''' || 's'", true},
		{"TRUE", true},
		{"FALSE", false},
		{"NOT FALSE", true},
		{"1.5e1 = 15", true},
		{".5 = 0.5", true},
		{"5. = 5", true},
		{"0x10 = 16", true},
		{"0xFFFFFFFFFFFFFFFF = -1", true},
		{"9223372036854775808 > big", true}, // too big for int64: a float

		// Comparisons.
		{"id == 2", true},
		{"id != 2", false},
		{"id <> 3", true},
		{"id < 2.5", true},
		{"id <= 2", true},
		{"id > 1.999", true},
		{"id >= 3", false},
		{"progress = 0.5", true},
		{"progress < 1", true},
		{"numtext = 42", true},   // numeric string against a number
		{"numtext > 5", true},    // numerically, not '42' < '5'
		{"numtext > '5'", false}, // both strings: bytewise
		{"id = '2'", true},       // number against numeric string
		{"id = ' 2 '", true},     // surrounding spaces allowed
		{"id = '2x'", false},     // not a number: numbers sort first
		{"id < 'abc'", true},     // numbers before text
		{"state > 'A'", true},
		{"state < 'b'", true}, // bytewise: 'W' < 'b'
		{"big = 9223372036854775807", true},
		{"big < 9223372036854775807.0", true},           // exact: the float is 2^63
		{"big > 9223372036854775806.0", false},          // the float rounds to 2^63 too
		{"9007199254740993 > 9007199254740992.0", true}, // beyond 2^53
		{"start_int = 7", true},
		{"flag = 1", true},
		{"f32 = 1.5", true},
		{"1 < 2 = 1", true}, // relational binds tighter than equality

		// NULL.
		{"worker IS NULL", true},
		{"worker IS NOT NULL", false},
		{"worker ISNULL", true},
		{"worker NOTNULL", false},
		{"worker NOT NULL", false},
		{"affinity IS NOT NULL", true},
		{"worker = NULL", false},
		{"NOT (worker = NULL)", false}, // NULL stays NULL under NOT
		{"worker != 'x'", false},
		{"NULL", false},
		{"nan IS NULL", true},
		{"worker IS worker", true},
		{"id IS 2", true},
		{"id IS NOT 2", false},
		{"worker IN (1, 2)", false},
		{"worker NOT IN (1, 2)", false},
		{"id IN (1, NULL)", false},
		{"id NOT IN (1, NULL)", false}, // unknown, not true
		{"id IN (2, NULL)", true},
		{"id IN ()", false},
		{"id NOT IN ()", true},
		{"worker IN ()", false},
		{"NULL OR 1", true},
		{"NULL AND 0", false},
		{"NOT (NULL AND 0)", true},
		{"NOT (NULL OR 0)", false},
		{"coalesce(worker, 'none') = 'none'", true},
		{"ifnull(worker, 3) = 3", true},
		{"worker || 'x' IS NULL", true},
		{"worker + 1 IS NULL", true},
		{"-worker IS NULL", true},
		{"worker LIKE '%' IS NULL", true},

		// AND/OR/NOT precedence.
		{"1 OR 0 AND 0", true},
		{"(1 OR 0) AND 0", false},
		{"NOT 0 AND 0", false},
		{"NOT NOT 1", true},
		{"NOT id = 3", true},

		// BETWEEN.
		{"priority BETWEEN 50 AND 150", true},
		{"priority BETWEEN 101 AND 150", false},
		{"priority NOT BETWEEN 101 AND 150", true},
		{"priority BETWEEN 50 AND 150 AND id = 2", true},
		{"priority BETWEEN 50 AND 150 AND id = 3", false},
		{"priority BETWEEN 50 AND NULL", false},
		{"priority NOT BETWEEN 150 AND NULL", true}, // the lower bound already fails
		{"priority BETWEEN 100 AND 100", true},
		{"'b' BETWEEN 'a' AND 'c'", true},

		// Arithmetic and concatenation.
		{"priority + 1 = 101", true},
		{"priority - id * 10 = 80", true},
		{"(priority - id) * 10 = 980", true},
		{"priority / 3 = 33", true},     // integer division
		{"priority / 3.0 > 33.3", true}, // float division
		{"1 / 0 IS NULL", true},
		{"1.0 / 0 IS NULL", true},
		{"-id = -2", true},
		{"- -id = 2", true},
		{"+id = 2", true},
		{"-'3' = -3", true},
		{"'3abc' + 1 = 4", true}, // numeric prefix
		{"'abc' + 1 = 1", true},
		{"big + 1 > big", true}, // overflow becomes float
		{"big * 2 > big", true},
		{"-9223372036854775807 - 2 < 0", true},
		{"(-9223372036854775807 - 1) / -1 > 0", true},
		{"id || '' = '2'", true},
		{"progress || '' = '0.5'", true},
		{"2.0 || '' = '2.0'", true},
		{"title || '/' || state = 'shot_frame_12/WAITING'", true},
		{"'a' || 'b' = 'ab'", true},

		// Truthiness of bare values.
		{"id", true},
		{"parent", false},
		{"progress", true},
		{"'1abc'", true},
		{"'abc'", false},
		{"'0.0'", false},

		// LIKE and GLOB.
		{"user LIKE 'BOBBY'", true},
		{"user LIKE 'b_bby'", true},
		{"user LIKE 'b_by'", false},
		{"user LIKE '%'", true},
		{"user LIKE '%%b%y'", true},
		{"affinity LIKE ''", true},
		{"affinity LIKE '%'", true},
		{"affinity LIKE '_'", false},
		{"id LIKE '2'", true},
		{"title LIKE '%frame\\_1%' ESCAPE '\\'", true},
		{"'frameX12' LIKE '%frame\\_1%' ESCAPE '\\'", false},
		{"'100%' LIKE '100!%' ESCAPE '!'", true},
		{"'1000' LIKE '100!%' ESCAPE '!'", false},
		{"'Éa' LIKE 'éA'", false}, // ASCII-only case folding
		{"'éa' LIKE 'éA'", true},
		{"'日本語' LIKE '_本_'", true}, // _ is one character, not one byte
		{"title GLOB 'shot_*'", true},
		{"title GLOB 'SHOT_*'", false},
		{"title GLOB '*frame_1?'", true},
		{"title GLOB '*_[0-9][0-9]'", true},
		{"title GLOB '*[^0-9]'", false},
		{"title NOT GLOB '*[!x]'", true},
		{"'a]' GLOB '[]]'", false},
		{"']' GLOB '[]]'", true},
		{"'-' GLOB '[a-]'", true},
		{"'a' GLOB '[a'", false},

		// Functions.
		{"lower(state) = 'waiting'", true},
		{"UPPER(user) = 'BOBBY'", true},
		{"length(title) = 13", true},
		{"length('日本') = 2", true},
		{"length(id) = 1", true},
		{"abs(-5) = 5", true},
		{"abs('-2.5') = 2.5", true},
		{"abs(0 - id) = id", true},
		{"coalesce(NULL, NULL, 7) = 7", true},
		{"coalesce(NULL, NULL) IS NULL", true},

		// Whitespace and comments.
		{"id=2/*c*/AND/* x */state='WAITING'", true},
		{"id = 2 -- trailing comment", true},
		{"id\t=\n2", true},
	}
	for _, tc := range tests {
		w, err := Compile(tc.clause)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.clause, err)
			continue
		}
		got, err := w.Match(row)
		if err != nil {
			t.Errorf("Match(%q): %v", tc.clause, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.clause, got, tc.want)
		}
	}
}

func TestWhereCompileErrors(t *testing.T) {
	tests := []struct {
		clause, want string // want: a substring of the message
	}{
		{"state = 'WAITING", "unterminated string literal at offset 8"},
		{"\"state = 1", "unterminated quoted identifier"},
		{"[state = 1", "unterminated [identifier]"},
		{"\"\" = 1", "empty quoted identifier"},
		{"state =", "unexpected end of clause, expected an expression"},
		{"state = 1 2", "unexpected number 2 after the expression"},
		{"state = 1;", "unexpected character ';'"},
		{"state = 1; DROP TABLE jobs", "unexpected character ';'"},
		{"id = 1 garbage", "unexpected \"garbage\" after the expression"},
		{"(id = 1", "expected \")\", found end of clause"},
		{"id = 1)", "unexpected \")\" after the expression"},
		{"sleep(1)", "unknown function sleep()"},
		{"count(*) > 1", "unknown function count()"},
		{"lower(a, b) = 1", "wrong number of arguments to LOWER()"},
		{"coalesce(a)", "wrong number of arguments to COALESCE()"},
		{"id IN (SELECT id FROM jobs)", "subqueries are not supported"},
		{"EXISTS (SELECT 1)", "subqueries are not supported"},
		{"id IN 1", "expected \"(\""},
		{"id IN (1, 2", "expected \")\""},
		{"id BETWEEN 1 OR 2", "expected AND in BETWEEN"},
		{"id LIKE 'a' ESCAPE 'ab'", "ESCAPE needs a one-character string"},
		{"id LIKE 'a' ESCAPE x", "ESCAPE needs a one-character string"},
		{"id GLOB 'a' ESCAPE 'b'", "ESCAPE is only allowed with LIKE"},
		{"id = 12abc", "malformed number \"12abc\""},
		{"id = 1e", "malformed number"},
		{"id = 1.2.3", "malformed number"},
		{"id = 0x12345678901234567", "hex literal too big"},
		{"id = ?", "unexpected character '?'"},
		{"id = :x", "unexpected character ':'"},
		{"id & 1", "unexpected character '&'"},
		{"id % 2 = 0", "unexpected character '%'"},
		{"id ! 1", "unexpected character '!'"},
		{"state = 'a' ORDER BY id", "unexpected keyword ORDER after the expression"},
		{"CASE WHEN 1 THEN 1 END", "unexpected keyword CASE"},
		{"id = NOT 1", "unexpected keyword NOT, expected an expression"},
		{"id NOT 1", "unexpected keyword NOT after the expression"},
		{"AND", "unexpected keyword AND"},
		{"id = ,", "unexpected \",\""},
		{"a.b = 1", "unexpected character '.'"},
		{"id = 'x' COLLATE NOCASE", "unexpected keyword COLLATE"},
		{strings.Repeat("(", 65) + "1" + strings.Repeat(")", 65), "nested deeper than 64"},
		{strings.Repeat("NOT ", 100) + "1", "nested deeper than 64"},
		{strings.Repeat("- ", 100) + "1", "nested deeper than 64"},
		{strings.Repeat("lower(", 100) + "1" + strings.Repeat(")", 100), "nested deeper than 64"},
		{"id = '" + strings.Repeat("x", 4096) + "'", "the limit is 4096"},
	}
	for _, tc := range tests {
		w, err := Compile(tc.clause)
		if err == nil {
			t.Errorf("Compile(%.40q) = %v, want error containing %q", tc.clause, w, tc.want)
			continue
		}
		if !errors.Is(err, ErrBadClause) {
			t.Errorf("Compile(%.40q): %v does not wrap ErrBadClause", tc.clause, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.40q) error = %q, want it to contain %q", tc.clause, err, tc.want)
		}
	}
}

func TestWhereDepthLimitIsReachable(t *testing.T) {
	// 63 parentheses plus the top level is exactly the limit.
	clause := strings.Repeat("(", 63) + "1" + strings.Repeat(")", 63)
	if _, err := Compile(clause); err != nil {
		t.Fatalf("Compile(63 parens): %v", err)
	}
	// Long flat chains are not nesting and stay within the size bound.
	chain := "id = 0" + strings.Repeat(" OR id = 2", 300)
	w, err := Compile(chain)
	if err != nil {
		t.Fatalf("Compile(long OR chain): %v", err)
	}
	if ok, err := w.Match(whereRowOf(whereTestRow)); !ok || err != nil {
		t.Fatalf("Match(long OR chain) = %v, %v", ok, err)
	}
}

func TestWhereMatchErrors(t *testing.T) {
	row := whereRowOf(whereTestRow)
	tests := []struct{ clause, want string }{
		{"nosuch = 1", `unknown column "nosuch"`},
		{"state = 'WAITING' AND NoSuch = 1", `unknown column "nosuch"`},
		{"bytes = 'x'", `column "bytes" has unsupported type []uint8`},
	}
	for _, tc := range tests {
		w, err := Compile(tc.clause)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.clause, err)
		}
		ok, err := w.Match(row)
		if err == nil || ok {
			t.Errorf("Match(%q) = %v, %v; want an error", tc.clause, ok, err)
			continue
		}
		if !errors.Is(err, ErrBadClause) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Match(%q) error = %v, want ErrBadClause containing %q", tc.clause, err, tc.want)
		}
	}
	// A nil Row knows no columns rather than panicking.
	w, _ := Compile("id = 1")
	if _, err := w.Match(nil); !errors.Is(err, ErrBadClause) {
		t.Errorf("Match(nil row) error = %v, want ErrBadClause", err)
	}
	// Short-circuiting means a decided AND does not look at later columns.
	w, _ = Compile("id = 3 AND nosuch = 1")
	if ok, err := w.Match(row); ok || err != nil {
		t.Errorf("Match(short-circuit) = %v, %v; want false, nil", ok, err)
	}
}

func TestWhereEmptyAndNil(t *testing.T) {
	for _, clause := range []string{"", " \n\t", "/* nothing */", "-- nothing"} {
		w, err := Compile(clause)
		if err != nil {
			t.Fatalf("Compile(%q): %v", clause, err)
		}
		if ok, err := w.Match(nil); !ok || err != nil {
			t.Errorf("Match(%q) = %v, %v; want true", clause, ok, err)
		}
		if cols := w.Columns(); len(cols) != 0 {
			t.Errorf("Columns(%q) = %v, want none", clause, cols)
		}
	}
	var w *Clause
	if ok, err := w.Match(nil); !ok || err != nil {
		t.Errorf("nil Clause Match = %v, %v; want true", ok, err)
	}
	if w.Columns() != nil {
		t.Errorf("nil Clause Columns = %v", w.Columns())
	}
}

func TestWhereColumns(t *testing.T) {
	tests := []struct {
		clause string
		want   []string
	}{
		{"1 = 1", nil},
		{"state='WAITING' AND user LIKE 'bob%'", []string{"state", "user"}},
		{"Priority >= 100 OR (paused = 1 AND NOT STATE = 'FINISHED' AND priority < 5)", []string{"priority", "paused", "state"}},
		{"\"Title\" LIKE '%x%' OR `id` IN (parent, 3) OR lower(user) = 'x'", []string{"title", "id", "parent", "user"}},
		{"coalesce(worker, 'x') = 'state'", []string{"worker"}},
	}
	for _, tc := range tests {
		w, err := Compile(tc.clause)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.clause, err)
		}
		got := w.Columns()
		if !slices.Equal(got, tc.want) {
			t.Errorf("Columns(%q) = %v, want %v", tc.clause, got, tc.want)
		}
		if len(got) > 0 {
			got[0] = "mutated" // callers get a copy
			if w.Columns()[0] == "mutated" {
				t.Errorf("Columns(%q) exposes internal state", tc.clause)
			}
		}
	}
}

func TestWhereLikeMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		esc    rune
		want   bool
	}{
		{"", "", -1, true},
		{"", "a", -1, false},
		{"%", "", -1, true},
		{"_", "", -1, false},
		{"a%b%c", "aXXbYYc", -1, true},
		{"a%b%c", "aXXbYY", -1, false},
		{"%a%a%a%b", "aaaaaaaaaaaaaaaaaaaaaaaaa", -1, false},
		{"%abc", "ababc", -1, true},
		{"A_C", "abc", -1, true},
		{"a\\%", "a%", '\\', true},
		{"a\\%", "ab", '\\', false},
		{"a\\", "a", '\\', false}, // dangling escape
		{"a%\\", "abc", '\\', false},
		{"\xff", "\xff", -1, true}, // invalid UTF-8 compares bytewise
		{"\xff", "\xfe", -1, false},
		{"_", "\xff", -1, true},
	}
	for _, tc := range tests {
		if got, err := whereLikeMatch(tc.pat, tc.s, tc.esc, nil); got != tc.want || err != nil {
			t.Errorf("whereLikeMatch(%q, %q, %q) = %v, %v; want %v", tc.pat, tc.s, tc.esc, got, err, tc.want)
		}
	}
}

// TestWhereMatchDoesNotAllocate guards the "compile once, evaluate per row
// fast" design: a typical filter costs no garbage per row.
func TestWhereMatchDoesNotAllocate(t *testing.T) {
	w, err := Compile("state='WAITING' AND user LIKE 'bob%' AND (priority >= 100 OR id IN (1,2,3)) AND title GLOB '*_12' AND worker IS NULL")
	if err != nil {
		t.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	allocs := testing.AllocsPerRun(100, func() {
		if ok, err := w.Match(row); !ok || err != nil {
			t.Fatalf("Match = %v, %v", ok, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per row, want 0", allocs)
	}
}

func TestWhereConcurrentMatch(t *testing.T) {
	w, err := Compile("user LIKE 'bob%' AND id IN (1, 2)")
	if err != nil {
		t.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	done := make(chan bool)
	for range 8 {
		go func() {
			ok := true
			for range 200 {
				m, err := w.Match(row)
				ok = ok && m && err == nil
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("concurrent Match failed")
		}
	}
}

// BenchmarkWhereMatch and BenchmarkWhereMatchBudget measure a typical UI
// filter over one row, without a budget and with one: budgeting must cost
// next to nothing per row.
//
//	go test -run '^$' -bench WhereMatch -benchmem ./api/coalition/
func BenchmarkWhereMatch(b *testing.B) {
	w, err := Compile("state='WAITING' AND user LIKE 'bob%' AND (priority >= 100 OR id IN (1,2,3))")
	if err != nil {
		b.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	for b.Loop() {
		_, _ = w.Match(row)
	}
}

func BenchmarkWhereMatchBudget(b *testing.B) {
	w, err := Compile("state='WAITING' AND user LIKE 'bob%' AND (priority >= 100 OR id IN (1,2,3))")
	if err != nil {
		b.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	budget := NewBudget(b.Context(), math.MaxInt64)
	for b.Loop() {
		_, _ = w.MatchBudget(row, budget)
	}
}

func FuzzCompileWhere(f *testing.F) {
	for _, s := range []string{
		"",
		"state='WAITING' AND user LIKE 'bob%'",
		"id IN (1,2,3)",
		"priority >= 100 OR (paused = 1 AND NOT state = 'FINISHED')",
		"title LIKE '%frame_1%' ESCAPE '\\'",
		"title GLOB '*[^0-9]?'",
		"worker IS NOT NULL AND priority BETWEEN 1 AND 2",
		"-id || 'x' = coalesce(worker, 1e5, 0x10) / 0",
		"big * big + -9223372036854775807 - 2",
		"lower(\"state\") = `user` AND [title] NOT LIKE 'a'",
		"(((((1)))))",
		"'unterminated",
		"id = 1 /* comment",
		"\xff\xfe = '\xff'",
	} {
		f.Add(s)
	}
	row := whereRowOf(whereTestRow)
	f.Fuzz(func(t *testing.T, clause string) {
		w, err := Compile(clause)
		if err != nil {
			if !errors.Is(err, ErrBadClause) {
				t.Fatalf("Compile(%q) error %v does not wrap ErrBadClause", clause, err)
			}
			return
		}
		if _, err := w.Match(row); err != nil && !errors.Is(err, ErrBadClause) {
			t.Fatalf("Match(%q) error %v does not wrap ErrBadClause", clause, err)
		}
		_ = w.Columns()
	})
}

// whereParseNumberRef is an exact reference for whereParseNumber: the
// integer as strconv.ParseInt reads it, or else the nearest float by exact
// rational arithmetic. (strconv.ParseFloat itself is wrong on numerals with
// over 800 integer digits, for example "1" + 800 zeros + "e-800" gives 0.1
// in Go 1.26, so it is the reference only where the exponent alone decides.)
func whereParseNumberRef(t *testing.T, num string, isInt bool) whereValue {
	if isInt {
		if i, err := strconv.ParseInt(num, 10, 64); err == nil {
			return whereIntVal(i)
		}
	}
	if _, e, ok := strings.Cut(strings.ToLower(num), "e"); ok {
		if e = strings.TrimLeft(strings.TrimLeft(e, "+-"), "0"); len(e) > 4 {
			f, _ := strconv.ParseFloat(num, 64) // 0 or ±Inf whatever the digits
			return whereFloat64(f)
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		t.Fatalf("big.Rat cannot read %.60q", num)
	}
	f, _ := r.Float64()
	return whereFloat64(f)
}

// whereSameValue compares two values, -0 equal to 0 (which big.Rat lacks).
func whereSameValue(a, b whereValue) bool {
	return a.kind == b.kind && a.i == b.i && a.f == b.f && a.s == b.s
}

func checkWhereNumeral(t *testing.T, num string) {
	t.Helper()
	start, end, isInt, ok := whereScanNumber(num)
	if !ok || start != 0 || end != len(num) {
		t.Fatalf("test numeral %.60q does not scan whole", num)
	}
	if got, want := whereParseNumber(num, isInt), whereParseNumberRef(t, num, isInt); !whereSameValue(got, want) {
		t.Errorf("whereParseNumber(%.60q... %d bytes) = %+v, strconv gives %+v", num, len(num), got, want)
	}
}

func TestWhereParseLongNumerals(t *testing.T) {
	z := strings.Repeat("0", 900)
	nines := strings.Repeat("9", 900)
	for _, num := range []string{
		"0", "-0", "+0", "00000000000000000000000000000000000000000000000000000000000000000000000000012",
		"-" + z + "9223372036854775808", "-" + z + "9223372036854775809", z + "9223372036854775807",
		z + "9223372036854775808", "18446744073709551616", nines, "-" + nines, "0." + nines,
		z + "." + z, "-" + z + "." + z + "e5", "." + z + "1", z + "1." + z + "1e-" + z + "900",
		"1" + z + "e-900", "1" + z + "e-1300", "1e" + z + "308", "1e" + z + "309", "-1e" + z + "400",
		"1" + z + "e" + nines, "1" + z + "e-" + nines, "0." + z + "e" + nines,
		"4.9406564584124654e-324", "2.4703282292062327e-324" + z, "2.4703282292062328e-324",
		"1" + strings.Repeat("1", 1<<16),
	} {
		checkWhereNumeral(t, num)
	}
	// Exact halfway points between neighbouring floats, and just above and
	// below them past the 800th digit: the hardest cases for rounding.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		f := math.Float64frombits(rng.Uint64() &^ (1 << 63))
		if math.IsInf(f, 0) || math.IsNaN(f) {
			continue
		}
		next := math.Nextafter(f, math.Inf(1))
		if math.IsInf(next, 0) {
			continue
		}
		mid := new(big.Float).SetPrec(2000).SetFloat64(f)
		mid.Add(mid, new(big.Float).SetFloat64(next)).Quo(mid, big.NewFloat(2))
		exact := strings.TrimRight(mid.Text('e', 1100), "0") // exact: a dyadic fraction
		m, e, _ := strings.Cut(exact, "e")
		m = strings.TrimRight(m, "0")
		checkWhereNumeral(t, m+"e"+e)
		checkWhereNumeral(t, m+z+"1e"+e)
		checkWhereNumeral(t, "-"+m+z+"1e"+e)
		checkWhereNumeral(t, strings.Replace(m, ".", "", 1)+z+"e"+e)
		checkWhereNumeral(t, "0.000"+strings.Replace(m, ".", "", 1)+"e"+e)
		checkWhereNumeral(t, strconv.FormatFloat(f, 'e', -1, 64)+z)
		checkWhereNumeral(t, strconv.FormatFloat(f, 'f', -1, 64)+z+"1")
	}
}

func FuzzWhereNumeral(f *testing.F) {
	for _, s := range []string{"0", "-12", "1e5", "00000000000000000000012", "1" + strings.Repeat("0", 70) + ".5e-3", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, isInt, ok := whereScanNumber(s)
		if !ok {
			return
		}
		num := s[start:end]
		if got, want := whereParseNumber(num, isInt), whereParseNumberRef(t, num, isInt); !whereSameValue(got, want) {
			t.Errorf("whereParseNumber(%q) = %+v, strconv gives %+v", num, got, want)
		}
	})
}

// whereBigRow is a row with long strings, as an attacker can make by
// submitting jobs with megabyte titles.
func whereBigRow(title string) Row {
	return func(c string) (any, bool) {
		switch c {
		case "title":
			return title, true
		case "id":
			return int64(7), true
		case "state":
			return "WAITING", true
		}
		return nil, false
	}
}

// whereAllocated returns the bytes f allocates.
func whereAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestWhereConcatTooLarge(t *testing.T) {
	// The reported attack: hundreds of || over megabyte titles, which grew a
	// coordinator by gigabytes. It must fail at the first oversized value,
	// before building it.
	clause := "length(title" + strings.Repeat("||title", 500) + ") > 0"
	w, err := Compile(clause)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1 << 20, 300 << 10, MaxValueBytes/2 + 1} {
		row := whereBigRow(strings.Repeat("t", size))
		for _, b := range []*Budget{nil, NewBudget(t.Context(), 0)} {
			var ok bool
			var err error
			n := whereAllocated(func() { ok, err = w.MatchBudget(row, b) })
			if ok || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("title of %d bytes: MatchBudget = %v, %v; want ErrTooLarge", size, ok, err)
			}
			// At most the values under the cap: 600 KiB + 900 KiB for 300 KiB titles.
			if n > 4<<20 {
				t.Errorf("title of %d bytes: the failed evaluation allocated %d bytes", size, n)
			}
		}
	}
	// Right at the cap is allowed; one byte over is not.
	half := strings.Repeat("x", MaxValueBytes/2)
	w, _ = Compile("length(title || title) = " + strconv.Itoa(MaxValueBytes))
	if ok, err := w.Match(whereBigRow(half)); !ok || err != nil {
		t.Errorf("a value of exactly MaxValueBytes: %v, %v", ok, err)
	}
	if _, err := w.Match(whereBigRow(half + "x")); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the limit is 1048576") {
		t.Errorf("a value of MaxValueBytes+1: %v, want ErrTooLarge naming the limit", err)
	}
}

func TestWhereCaseMappingTooLarge(t *testing.T) {
	for _, fn := range []string{"lower", "upper"} {
		w, err := Compile(fn + "(title) = 'x'")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Match(whereBigRow(strings.Repeat("a", MaxValueBytes))); err != nil {
			t.Errorf("%s of MaxValueBytes: %v", fn, err)
		}
		if _, err := w.Match(whereBigRow(strings.Repeat("a", MaxValueBytes+1))); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s of MaxValueBytes+1: %v, want ErrTooLarge", fn, err)
		}
	}
	// Reading a long column is fine: only built values are capped.
	w, _ := Compile("length(title) > 0 AND title LIKE 'a%' AND title = title")
	if ok, err := w.Match(whereBigRow(strings.Repeat("a", 2*MaxValueBytes))); !ok || err != nil {
		t.Errorf("reading a 2 MiB column = %v, %v", ok, err)
	}
}

func TestWherePatternLimit(t *testing.T) {
	long := strings.Repeat("a", 1000)
	atCap := "%" + strings.Repeat("a", MaxPatternBytes-2) + "b"
	for _, clause := range []string{
		"title LIKE '%" + long + " b'",
		"title NOT LIKE '" + long + "'",
		"title GLOB '*" + long + "'",
		"title LIKE '" + strings.Repeat("a", MaxPatternBytes+1) + "' ESCAPE '!'",
	} {
		_, err := Compile(clause)
		if !errors.Is(err, ErrBadClause) || !strings.Contains(err.Error(), "pattern is") || !strings.Contains(err.Error(), "the limit is 256") {
			t.Errorf("Compile(%.30q...) = %v, want ErrBadClause naming the limit", clause, err)
		}
	}
	if _, err := Compile("title LIKE '" + atCap + "'"); err != nil {
		t.Errorf("a pattern of MaxPatternBytes: %v", err)
	}
	// Computed patterns are checked as they are evaluated.
	row := whereBigRow(strings.Repeat("a", MaxPatternBytes+1))
	for _, clause := range []string{"'a' LIKE title", "'a' GLOB title", "'a' LIKE 'a' || title", "'a' NOT LIKE lower(title)"} {
		w, err := Compile(clause)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Match(row); !errors.Is(err, ErrBadClause) || !strings.Contains(err.Error(), "the limit is 256") {
			t.Errorf("Match(%q) = %v, want ErrBadClause naming the limit", clause, err)
		}
	}
}

func TestWherePatternAtCapFinishes(t *testing.T) {
	// Patterns at the cap over a megabyte title: a typical one is a single
	// linear pass; the worst one, many %-anchored near misses, is len(pat)
	// times len(title) and is what the budget is for.
	big := strings.Repeat("a", 1<<20)
	easy := "%" + strings.Repeat("x", MaxPatternBytes-2) + "%"
	w, err := Compile("title LIKE '" + easy + "' OR title GLOB '*" + strings.Repeat("x", MaxPatternBytes-2) + "*'")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBudget(t.Context(), 0)
	if ok, err := w.MatchBudget(whereBigRow(big), b); ok || err != nil {
		t.Fatalf("easy pattern at the cap over 1 MiB = %v, %v", ok, err)
	}
	if b.Spent() > 2<<20 {
		t.Errorf("easy pattern at the cap over 1 MiB cost %d steps, want about 1M", b.Spent())
	}

	worst := "%" + strings.Repeat("a", MaxPatternBytes-2) + "b"
	for _, op := range []string{"LIKE '" + worst + "'", "GLOB '*" + strings.Repeat("?", MaxPatternBytes-2) + "b'"} {
		w, err := Compile("title " + op)
		if err != nil {
			t.Fatal(err)
		}
		// Over 16 KiB it finishes, with the right answer, and costs what
		// the bound says: linear in text times pattern.
		var spent [2]int64
		for i, n := range []int{8 << 10, 16 << 10} {
			b := NewBudget(t.Context(), 0)
			if ok, err := w.MatchBudget(whereBigRow(big[:n]), b); ok || err != nil {
				t.Fatalf("%s over %d bytes = %v, %v", op, n, ok, err)
			}
			spent[i] = b.Spent()
			if bound := int64(n) * MaxPatternBytes / whereMatchPerStep; spent[i] > bound {
				t.Errorf("%s over %d bytes cost %d steps, above the bound %d", op, n, spent[i], bound)
			}
		}
		if r := float64(spent[1]) / float64(spent[0]); r > 2.2 {
			t.Errorf("%s: twice the text cost %.2f times the steps, want about 2", op, r)
		}
		// Over 1 MiB it runs out of a small budget promptly.
		b := NewBudget(t.Context(), 1<<20)
		if _, err := w.MatchBudget(whereBigRow(big), b); !errors.Is(err, ErrBudget) {
			t.Errorf("%s over 1 MiB with a small budget = %v, want ErrBudget", op, err)
		}
		if s := b.Spent(); s != 1<<20 {
			t.Errorf("Spent() = %d after running out, want the whole budget", s)
		}
	}
}

func TestWhereBudgetAcrossRows(t *testing.T) {
	w, err := Compile("state = 'WAITING' AND id IN (1, 2, 3)")
	if err != nil {
		t.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	probe := NewBudget(t.Context(), 0)
	if ok, err := w.MatchBudget(row, probe); !ok || err != nil {
		t.Fatalf("MatchBudget = %v, %v", ok, err)
	}
	perRow := probe.Spent()
	if perRow < 5 || perRow > 10 {
		t.Fatalf("the clause costs %d steps a row, want 5-10", perRow)
	}
	const steps = 1000
	b := NewBudget(t.Context(), steps)
	rows := 0
	for ; rows < 10*steps; rows++ {
		if _, err = w.MatchBudget(row, b); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrBudget) || errors.Is(err, ErrBadClause) {
		t.Fatalf("after %d rows: %v, want ErrBudget alone", rows, err)
	}
	if want := int(steps / perRow); rows != want {
		t.Errorf("the budget ran out after %d rows, want %d", rows, want)
	}
	// It stays spent, for every later row and for an empty clause too.
	if _, err := w.MatchBudget(row, b); !errors.Is(err, ErrBudget) {
		t.Errorf("after running out: %v", err)
	}
	var empty *Clause
	if _, err := empty.MatchBudget(row, b); !errors.Is(err, ErrBudget) || !errors.Is(b.Err(), ErrBudget) {
		t.Errorf("after running out, an empty clause: %v", err)
	}
}

func TestWhereBudgetContext(t *testing.T) {
	row := whereRowOf(whereTestRow)
	w, err := Compile("state = 'WAITING'")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	b := NewBudget(ctx, 0)
	for range 100 {
		if _, err := w.MatchBudget(row, b); err != nil {
			t.Fatalf("before cancelling: %v", err)
		}
	}
	cancel() // the client went away
	rows := 0
	for ; rows < 100_000; rows++ {
		if _, err = w.MatchBudget(row, b); err != nil {
			break
		}
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBudget) {
		t.Fatalf("after cancelling: %v after %d rows, want context.Canceled", err, rows)
	}
	if rows > whereCtxEvery {
		t.Errorf("%d rows went by after cancelling, want at most %d", rows, whereCtxEvery)
	}

	// A single long match stops too, and a deadline reads as one.
	ctx, cancel = context.WithDeadline(t.Context(), time.Unix(0, 0))
	defer cancel()
	w, err = Compile("title LIKE '%" + strings.Repeat("a", 200) + "b'")
	if err != nil {
		t.Fatal(err)
	}
	b = NewBudget(ctx, 0)
	if _, err := w.MatchBudget(whereBigRow(strings.Repeat("a", 1<<20)), b); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a long match past the deadline: %v, want context.DeadlineExceeded", err)
	}
	if s := b.Spent(); s > 2*whereCtxEvery {
		t.Errorf("the match went on for %d steps past the deadline", s)
	}
}

// TestWhereOrdinaryFiltersFit checks DefaultSteps against filters the
// UI sends: each must run over a million realistic jobs with at least a
// third of the budget to spare.
func TestWhereOrdinaryFiltersFit(t *testing.T) {
	row := whereRowOf(map[string]any{
		"id":       int64(123456),
		"parent":   int64(120000),
		"title":    "seq010_sh0420_lighting_beauty_v012 frame 1042",
		"command":  "/opt/renderer/bin/render --scene /proj/seq010/sh0420/lighting_v012.scn --frame 1042 --pass beauty",
		"state":    "WAITING",
		"user":     "bobby",
		"paused":   int64(0),
		"priority": int64(100),
		"worker":   "node-042",
		"affinity": "gpu,linux",
		"progress": 0.25,
		"duration": int64(3600),
		"retry":    int64(2),
	})
	for _, clause := range []string{
		"state='WAITING' AND user LIKE 'bob%' AND (priority >= 100 OR id IN (1,2,3))",
		"title LIKE '%sh0420%' AND state IN ('WAITING', 'WORKING', 'ERROR')",
		"command LIKE '%lighting%' OR title GLOB '*beauty*'",
		"lower(user) = 'bobby' AND paused = 0 AND worker IS NOT NULL AND progress BETWEEN 0 AND 0.5",
		"parent = 120000 AND id IN (" + strings.Repeat("123457, ", 200) + "123456)",
		"affinity LIKE '%gpu%' AND duration > 60 * 60 AND retry < 3 AND NOT paused",
	} {
		w, err := Compile(clause)
		if err != nil {
			t.Fatal(err)
		}
		b := NewBudget(t.Context(), 0)
		if _, err := w.MatchBudget(row, b); err != nil {
			t.Fatalf("MatchBudget(%.40q): %v", clause, err)
		}
		t.Logf("%4d steps a row: %.60s", b.Spent(), clause)
		if b.Spent()*1_000_000 > DefaultSteps*2/3 {
			t.Errorf("%.50q costs %d steps a row: a million rows would take more than 2/3 of DefaultSteps", clause, b.Spent())
		}
	}
}

func TestWhereStaticLimits(t *testing.T) {
	ids := make([]string, whereMaxInList+1)
	for i := range ids {
		ids[i] = strconv.Itoa(i % 10)
	}
	tests := []struct{ clause, want string }{
		{"id IN (" + strings.Join(ids, ",") + ")", "IN list longer than 1024 elements"},
		{"1" + strings.Repeat("+1", whereMaxNodes/2), "nodes, the limit is 2048"},
	}
	for _, tc := range tests {
		if _, err := Compile(tc.clause); !errors.Is(err, ErrBadClause) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.30q...) = %v, want ErrBadClause containing %q", tc.clause, err, tc.want)
		}
	}
	// Just under both limits compiles, and a long integer IN list is a
	// lookup: its cost does not grow with the list.
	w, err := Compile("id IN (" + strings.Join(ids[:whereMaxInList-1], ",") + ", 2)")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBudget(t.Context(), 0)
	if ok, err := w.MatchBudget(whereRowOf(whereTestRow), b); !ok || err != nil {
		t.Fatalf("long IN list = %v, %v", ok, err)
	}
	if b.Spent() > 3 {
		t.Errorf("an integer IN list of %d costs %d steps, want 2", whereMaxInList, b.Spent())
	}
	if _, err := Compile("1" + strings.Repeat("+1", whereMaxNodes/2-1)); err != nil {
		t.Errorf("a clause of %d nodes: %v", whereMaxNodes-1, err)
	}
}

func TestWhereInIntegerSet(t *testing.T) {
	// The set lookup must answer as the element-by-element comparison does.
	row := whereRowOf(whereTestRow)
	for _, tc := range []struct {
		clause string
		want   bool
	}{
		{"id IN (1, 2, 3)", true},
		{"id IN (-2, 5)", false},
		{"-id IN (-2, 5)", true},
		{"numtext IN (41, 42)", true}, // a numeric string against integers
		{"'2' IN (2)", true},
		{"' 2 ' IN (2)", true},
		{"'2x' IN (2)", false},
		{"2.0 IN (1, 2)", true},
		{"progress IN (0, 1)", false},
		{"big IN (9223372036854775807)", true},
		{"worker IN (1, 2)", false},
		{"worker NOT IN (1, 2)", false},
		{"id NOT IN (1, 3)", true},
		{"id NOT IN (1, 2)", false},
	} {
		w, err := Compile(tc.clause)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := w.Match(row); got != tc.want || err != nil {
			t.Errorf("Match(%q) = %v, %v; want %v", tc.clause, got, err, tc.want)
		}
	}
}

func TestNewBudgetDefaults(t *testing.T) {
	var none context.Context // documented to mean Background
	b := NewBudget(none, 0)
	if b.steps != DefaultSteps || b.ctx == nil || b.Spent() != 0 || b.Err() != nil {
		t.Errorf("NewBudget(nil, 0) = %+v", b)
	}
	if b := NewBudget(t.Context(), -5); b.steps != DefaultSteps {
		t.Errorf("NewBudget(ctx, -5) has %d steps", b.steps)
	}
	// An unlimited budget does not overflow.
	b = NewBudget(t.Context(), math.MaxInt64)
	w, _ := Compile("title LIKE '%frame%'")
	for range 1000 {
		if _, err := w.MatchBudget(whereRowOf(whereTestRow), b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWhereMatchBudgetDoesNotAllocate(t *testing.T) {
	w, err := Compile("state='WAITING' AND user LIKE 'bob%' AND (priority >= 100 OR id IN (1,2,3)) AND title GLOB '*_12' AND worker IS NULL")
	if err != nil {
		t.Fatal(err)
	}
	row := whereRowOf(whereTestRow)
	b := NewBudget(t.Context(), math.MaxInt64)
	allocs := testing.AllocsPerRun(100, func() {
		if ok, err := w.MatchBudget(row, b); !ok || err != nil {
			t.Fatalf("MatchBudget = %v, %v", ok, err)
		}
	})
	if allocs != 0 {
		t.Errorf("MatchBudget allocates %v times per row, want 0", allocs)
	}
}

// whereFuzzRow has long strings so that random clauses reach the caps: two
// 300 KiB values concatenated twice are over MaxValueBytes.
var whereFuzzRow = whereRowOf(map[string]any{
	"id":      int64(2),
	"title":   strings.Repeat("shot_frame_12 é ", 512),
	"long":    strings.Repeat("a", 300<<10),
	"digits":  strings.Repeat("9", 100<<10),
	"numtext": "42",
	"worker":  nil,
	"prog":    0.5,
	"big":     int64(math.MaxInt64),
})

// whereFuzzSteps keeps each fuzzed evaluation to a few milliseconds.
const whereFuzzSteps = 200_000

func FuzzWhere(f *testing.F) {
	for _, s := range []string{
		"state='WAITING' AND id IN (1,2,3)",
		"length(title||title||title) > 0",
		"length(long||long||long||long) > 0",
		"lower(long||long) = upper(long)",
		"title LIKE '%frame%é%' AND long LIKE '%a%a%ab'",
		"long GLOB '*[a-z]*?b' OR title GLOB '*[^x]'",
		"'x' LIKE long OR 'y' GLOB title",
		"long LIKE '%a!%' ESCAPE '!'",
		"long LIKE '%aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab'", // runs out of budget
		"digits + 1 > 0 AND -digits < 0 AND abs(digits) = digits",
		"digits = 1e100000 OR numtext IN (41, 42)",
		"coalesce(worker, long) || ifnull(worker, title) IS NOT NULL",
		"prog BETWEEN long AND title",
		"id IN (1, '2', 2.0, worker)",
		"big * big + -9223372036854775807 - 2",
		"(((((long)))))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, clause string) {
		w, err := Compile(clause)
		if err != nil {
			if !errors.Is(err, ErrBadClause) {
				t.Fatalf("Compile(%q): %v does not wrap ErrBadClause", clause, err)
			}
			return
		}
		b := NewBudget(context.Background(), whereFuzzSteps)
		ok, err := w.MatchBudget(whereFuzzRow, b)
		if b.peak > MaxValueBytes {
			t.Fatalf("MatchBudget(%q) built a value of %d bytes", clause, b.peak)
		}
		if b.Spent() > whereFuzzSteps {
			t.Fatalf("MatchBudget(%q) spent %d steps of %d", clause, b.Spent(), whereFuzzSteps)
		}
		if err != nil {
			n := 0
			for _, sentinel := range []error{ErrBadClause, ErrTooLarge, ErrBudget} {
				if errors.Is(err, sentinel) {
					n++
				}
			}
			if n != 1 || ok {
				t.Fatalf("MatchBudget(%q) = %v, %v: want false and exactly one sentinel", clause, ok, err)
			}
			if !errors.Is(err, ErrTooLarge) {
				return // without a budget, an ErrBudget would run long
			}
		}
		// The same work without a budget gives the same answer.
		ok2, err2 := w.Match(whereFuzzRow)
		if ok2 != ok || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Match(%q) = %v, %v; MatchBudget gave %v, %v", clause, ok2, err2, ok, err)
		}
	})
}
