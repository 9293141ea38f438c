package raftstore

import (
	"bytes"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

func TestJobsEncodeAsArrays(t *testing.T) {
	var buf bytes.Buffer
	j := &Job{ID: 7, Title: "frame", Command: "render", State: StateWaiting, Retry: 10}
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(j); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[0]
	if !(b >= 0x90 && b <= 0x9f) && b != 0xdc && b != 0xdd {
		t.Fatalf("a Job encodes as msgpack type 0x%x, not an array", b)
	}
	var back Job
	if err := codec.NewDecoderBytes(buf.Bytes(), msgpackHandle).Decode(&back); err != nil {
		t.Fatal(err)
	}
	if back.ID != 7 || back.Title != "frame" || back.Retry != 10 {
		t.Fatalf("round trip %+v", back)
	}
	t.Logf("one job: %d bytes", buf.Len())
}
