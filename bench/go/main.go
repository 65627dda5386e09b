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
//   - rw_v2_from_series: remote-write 2.0 requests as Prometheus' sender builds them (symbols
//     table, label references, per-series metadata, Marshal, snappy) from the same series;
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
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
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

// A series as Prometheus' 2.0 sender holds it: labels, its family's type and help, the sample.
type seriesV2 struct {
	labels    labels.Labels
	typ       writev2.Metadata_MetricType
	help      string
	value     float64
	timestamp int64
	start     int64
}

var v2Types = map[prompb.MetricMetadata_MetricType]writev2.Metadata_MetricType{
	prompb.MetricMetadata_COUNTER:   writev2.Metadata_METRIC_TYPE_COUNTER,
	prompb.MetricMetadata_GAUGE:     writev2.Metadata_METRIC_TYPE_GAUGE,
	prompb.MetricMetadata_SUMMARY:   writev2.Metadata_METRIC_TYPE_SUMMARY,
	prompb.MetricMetadata_HISTOGRAM: writev2.Metadata_METRIC_TYPE_HISTOGRAM,
	prompb.MetricMetadata_INFO:      writev2.Metadata_METRIC_TYPE_INFO,
}

// The series with their family's metadata (a series' family is the longest metadata name its
// name starts with: beam_x_distribution_sum belongs to beam_x_distribution), and a start time
// on cumulative series, as the Rust core sends them. Built outside the timed part: a sender
// holds its series this way already.
func seriesForV2(all []series, meta []prompb.MetricMetadata) []seriesV2 {
	byName := map[string]prompb.MetricMetadata{}
	for _, m := range meta {
		byName[m.MetricFamilyName] = m
	}
	out := make([]seriesV2, 0, len(all))
	for _, s := range all {
		b := labels.NewScratchBuilder(len(s.labels))
		name := ""
		for _, l := range s.labels {
			b.Add(l.Name, l.Value)
			if l.Name == "__name__" {
				name = l.Value
			}
		}
		b.Sort()
		var m prompb.MetricMetadata
		for k := len(name); k > 0; k-- {
			if x, ok := byName[name[:k]]; ok {
				m = x
				break
			}
		}
		t := v2Types[m.Type]
		var start int64
		if t == writev2.Metadata_METRIC_TYPE_COUNTER || t == writev2.Metadata_METRIC_TYPE_SUMMARY || t == writev2.Metadata_METRIC_TYPE_HISTOGRAM {
			start = s.timestamp
		}
		out = append(out, seriesV2{labels: b.Labels(), typ: t, help: m.Help, value: s.value, timestamp: s.timestamp, start: start})
	}
	return out
}

// Remote-write 2.0 requests of `chunk` series, as Prometheus' own sender builds them: a symbols
// table per request (writev2.SymbolsTable), label references, per-series metadata, Marshal and
// snappy.Encode.
func encodeV2(all []seriesV2) [][]byte {
	var out [][]byte
	st := writev2.NewSymbolTable()
	var buf []uint32
	for from := 0; from < len(all); from += chunk {
		to := from + chunk
		if to > len(all) {
			to = len(all)
		}
		st.Reset()
		req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, 0, to-from)}
		for _, s := range all[from:to] {
			buf = st.SymbolizeLabels(s.labels, buf)
			refs := make([]uint32, len(buf))
			copy(refs, buf)
			req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
				LabelsRefs: refs,
				Samples:    []writev2.Sample{{Value: s.value, Timestamp: s.timestamp, StartTimestamp: s.start}},
				Metadata:   writev2.Metadata{Type: s.typ, HelpRef: st.Symbolize(s.help)},
			})
		}
		req.Symbols = st.Symbols()
		raw, err := req.Marshal()
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
		v2 := seriesForV2(all, meta)
		v2size := 0
		for _, b := range encodeV2(v2) {
			v2size += len(b)
		}
		v2info := fmt.Sprintf("series=%d;bytes=%d", len(v2), v2size)
		m, lo, hi = measure(samples, 2, per, func() { sink += len(encodeV2(v2)) })
		fmt.Printf("result\tgo\trw_v2_from_series\t%d\t%.0f\t%.0f\t%.0f\t%d\t%s\n", n, m, lo, hi, samples, v2info)
	}
}
