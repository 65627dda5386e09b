// The Go reference of the remote-write encode comparison (BENCHMARKS.md): Prometheus' own
// prompb types (gogo-protobuf generated, as Prometheus' remote-write sender uses them) and
// github.com/golang/snappy.
//
// Usage: bench-go OUT N...
//
// For each N it reads the series from the Rust bodies OUT/enc/rust-N-I.bin (decoded into a
// flat list of label sets and values, standing in for a sender's in-memory series), then times
//   - encode_from_mapped: building the prompb WriteRequests (2000 series each, metadata in the
//     first) from that list, Marshal and snappy.Encode — what the Rust core does from its mapping;
//   - encode_prebuilt: Marshal and snappy.Encode of already built WriteRequests;
// and writes its own bodies to OUT/enc/go-N-I.bin for the equivalence check.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

const chunk = 2000

type series struct {
	labels    []prompb.Label
	value     float64
	timestamp int64
}

func load(dir string, n int) ([]series, []prompb.MetricMetadata) {
	var all []series
	var meta []prompb.MetricMetadata
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rust-%d-%d.bin", n, i)))
		if err != nil {
			break
		}
		raw, err := snappy.Decode(nil, b)
		if err != nil {
			panic(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			panic(err)
		}
		for _, ts := range req.Timeseries {
			all = append(all, series{labels: ts.Labels, value: ts.Samples[0].Value, timestamp: ts.Samples[0].Timestamp})
		}
		meta = append(meta, req.Metadata...)
	}
	if len(all) == 0 {
		panic("no Rust bodies for " + strconv.Itoa(n) + " in " + dir + " (run the Rust bench first)")
	}
	return all, meta
}

func requests(all []series, meta []prompb.MetricMetadata) []*prompb.WriteRequest {
	var reqs []*prompb.WriteRequest
	for from := 0; from < len(all); from += chunk {
		to := from + chunk
		if to > len(all) {
			to = len(all)
		}
		req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, to-from)}
		for _, s := range all[from:to] {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  s.labels,
				Samples: []prompb.Sample{{Value: s.value, Timestamp: s.timestamp}},
			})
		}
		if from == 0 {
			req.Metadata = meta
		}
		reqs = append(reqs, req)
	}
	return reqs
}

func encode(reqs []*prompb.WriteRequest) [][]byte {
	out := make([][]byte, 0, len(reqs))
	for _, r := range reqs {
		raw, err := r.Marshal()
		if err != nil {
			panic(err)
		}
		out = append(out, snappy.Encode(nil, raw))
	}
	return out
}

var sink int

func measure(samples, warmup, perSample int, f func()) (median, p25, p75 float64) {
	var t []float64
	for i := 0; i < warmup+samples; i++ {
		start := time.Now()
		for k := 0; k < perSample; k++ {
			f()
		}
		ns := float64(time.Since(start).Nanoseconds()) / float64(perSample)
		if i >= warmup {
			t = append(t, ns)
		}
	}
	sort.Float64s(t)
	q := func(p float64) float64 { return t[int(float64(len(t)-1)*p+0.5)] }
	return q(0.5), q(0.25), q(0.75)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bench-go OUT N...")
		os.Exit(2)
	}
	out := os.Args[1]
	enc := filepath.Join(out, "enc")
	samples := 11
	if s, err := strconv.Atoi(os.Getenv("BENCH_SAMPLES")); err == nil {
		samples = s
	}
	for _, a := range os.Args[2:] {
		n, err := strconv.Atoi(a)
		if err != nil {
			panic(err)
		}
		all, meta := load(enc, n)
		bodies := encode(requests(all, meta))
		size := 0
		for i, b := range bodies {
			size += len(b)
			if err := os.WriteFile(filepath.Join(enc, fmt.Sprintf("go-%d-%d.bin", n, i)), b, 0o644); err != nil {
				panic(err)
			}
		}
		info := fmt.Sprintf("series=%d;requests=%d;bytes=%d", len(all), len(bodies), size)
		per := 10000 / n
		if per < 1 {
			per = 1
		}
		m, lo, hi := measure(samples, 2, per, func() { sink += len(encode(requests(all, meta))) })
		fmt.Printf("result\tgo\tencode_from_mapped\t%d\t%.0f\t%.0f\t%.0f\t%d\t%s\n", n, m, lo, hi, samples, info)
		reqs := requests(all, meta)
		m, lo, hi = measure(samples, 2, per, func() { sink += len(encode(reqs)) })
		fmt.Printf("result\tgo\tencode_prebuilt\t%d\t%.0f\t%.0f\t%.0f\t%d\t%s\n", n, m, lo, hi, samples, info)
	}
}
