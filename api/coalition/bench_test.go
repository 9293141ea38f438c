package coalition

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/croftfarm/croft/raftstore"
)

// BenchmarkDecodeGroup100k measures the API edge of a 100,000-frame job:
// decoding PUT /api/jobs with nested children into JobSpecs.
//
//	go test -run '^$' -bench DecodeGroup100k -benchmem ./api/coalition/
func BenchmarkDecodeGroup100k(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"title":"shot 010","priority":10,"children":[`)
	for i := range 100_000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"title":"frame %d","command":"render -f %d","retry":3}`, i, i)
	}
	body.WriteString(`]}`)
	b.SetBytes(int64(body.Len()))
	b.ResetTimer()
	for range b.N {
		m, err := parseObject(body.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		var specs []raftstore.JobSpec
		if err := flattenJob(m, 0, &specs, 1_000_000); err != nil {
			b.Fatal(err)
		}
		if len(specs) != 100_001 {
			b.Fatalf("%d specs", len(specs))
		}
	}
}

// FuzzPlainDecodersAgreeWithJSON checks the fast paths against
// encoding/json: whatever they accept, they decode as it does.
//
//	go test -run '^$' -fuzz FuzzPlainDecodersAgreeWithJSON ./api/coalition/
func FuzzPlainDecodersAgreeWithJSON(f *testing.F) {
	for _, seed := range []string{`"frame 1"`, `""`, `"a\"b"`, `"tab\there"`, "\"\xff\"", `"é"`, `12`, `-7`, `0`, `012`, `1.5`, `1e3`,
		`-`, `9223372036854775807`, `123456789012345678`, `"12"`, `true`, `null`, `[1]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if s, ok := plainString(raw); ok {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil || s != want {
				t.Errorf("plainString(%q) = %q; json.Unmarshal gives %q, %v", raw, s, want, err)
			}
		}
		if i, ok := plainInt(raw); ok {
			var n json.Number
			if err := json.Unmarshal(raw, &n); err != nil {
				t.Fatalf("plainInt(%q) = %d; json.Unmarshal fails: %v", raw, i, err)
			}
			if want, err := n.Int64(); err != nil || i != want {
				t.Errorf("plainInt(%q) = %d; json.Number gives %d, %v", raw, i, want, err)
			}
		}
	})
}
