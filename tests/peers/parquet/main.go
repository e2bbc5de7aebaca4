// parquet-peer: Gauntlet's test peer for the Prometheus Parquet format. It is our own small
// program that uses github.com/prometheus-community/parquet-common as a library, the way a
// user of that library would: it converts a TSDB block with the library's converter and reads
// the result back with the library's queryable. tests/peers/README.md says how it is built.
//
// Usage:
//
//	parquet-peer convert --block DIR --out DIR [--name NAME] [--row-group-size N]
//	    [--num-row-groups N] [--col-duration 8h] [--sort-by __name__[,label...]]
//	parquet-peer dump  --dir DIR --name NAME [--shards N] --mint MS --maxt MS --match SELECTOR...
//	parquet-peer bench --dir DIR --name NAME [--shards N] --mint MS --maxt MS --match SELECTOR...
//	    --n COUNT [--reopen]
//	parquet-peer --version
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus-community/parquet-common/convert"
	"github.com/prometheus-community/parquet-common/queryable"
	"github.com/prometheus-community/parquet-common/schema"
	pqstorage "github.com/prometheus-community/parquet-common/storage"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

const libraryModule = "github.com/prometheus-community/parquet-common"

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return // the flag package has printed the usage
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "parquet-peer: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: parquet-peer convert|dump|bench [flags] (or --version)")
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Printf("parquet-peer (parquet-common %s)\n", libraryVersion())
		return nil
	case "convert":
		return runConvert(args[1:])
	case "dump":
		return runDump(args[1:])
	case "bench":
		return runBench(args[1:])
	default:
		return fmt.Errorf("unknown subcommand %q (known: convert, dump, bench)", args[0])
	}
}

// libraryVersion is the parquet-common version this binary was built with, from its build info.
func libraryVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == libraryModule {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return "unknown"
}

// newFlagSet returns a flag set whose errors are returned, not printed with exit status 2.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of parquet-peer %s:\n", name)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses positional arguments, which are always a mistake here.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// ---- convert ----

func runConvert(args []string) error {
	fs := newFlagSet("convert")
	blockDir := fs.String("block", "", "Prometheus TSDB block directory to convert (opened read-only)")
	outDir := fs.String("out", "", "directory of the filesystem bucket the Parquet files are written to")
	name := fs.String("name", "", "name of the converted block in the bucket (default: the block's ULID)")
	rowGroupSize := fs.Int("row-group-size", 0, "rows (series) per row group (0: the library's default, 1e6)")
	numRowGroups := fs.Int("num-row-groups", 0, "row groups per shard; more series make more shards (0: unlimited, one shard)")
	colDuration := fs.Duration("col-duration", 8*time.Hour, "time span of one data column")
	sortBy := fs.String("sort-by", labels.MetricName, "comma-separated labels the rows are sorted by")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *blockDir == "" || *outDir == "" {
		return errors.New("convert: --block and --out are required")
	}
	if *colDuration <= 0 {
		return errors.New("convert: --col-duration must be positive")
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	block, err := tsdb.OpenBlock(logger, *blockDir, chunkenc.NewPool(), nil)
	if err != nil {
		return fmt.Errorf("open block %s: %w", *blockDir, err)
	}
	defer func() { _ = block.Close() }()
	meta := block.Meta()
	if *name == "" {
		*name = meta.ULID.String()
	}

	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	bkt, err := filesystem.NewBucket(*outDir)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", *outDir, err)
	}
	defer func() { _ = bkt.Close() }()

	opts := []convert.ConvertOption{
		convert.WithName(*name),
		convert.WithColDuration(*colDuration),
		convert.WithSortBy(splitList(*sortBy)...),
	}
	if *rowGroupSize > 0 {
		opts = append(opts, convert.WithRowGroupSize(*rowGroupSize))
	}
	if *numRowGroups > 0 {
		opts = append(opts, convert.WithNumRowGroups(*numRowGroups))
	}

	// A block covers [MinTime, MaxTime): its MaxTime is exclusive. The converter's bounds are
	// closed in practice (its series set trims chunks to [mint, maxt] and schema.NewBuilder
	// documents maxt as inclusive, although ConvertTSDBBlock's comment calls maxt exclusive;
	// the library's own tests pass end-1). MaxTime-1 covers every sample the block can hold.
	shards, err := convert.ConvertTSDBBlock(
		context.Background(), bkt, meta.MinTime, meta.MaxTime-1,
		[]convert.Convertible{block}, logger, opts...,
	)
	if err != nil {
		return fmt.Errorf("convert block %s: %w", *blockDir, err)
	}
	out, err := json.Marshal(struct {
		Name   string `json:"name"`
		Shards int    `json:"shards"`
	}{*name, shards})
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// ---- reading: shared by dump and bench ----

type matchFlags []string

func (m *matchFlags) String() string     { return strings.Join(*m, " ") }
func (m *matchFlags) Set(s string) error { *m = append(*m, s); return nil }

type selectArgs struct {
	dir, name  string
	shards     int
	mint, maxt int64
	matchers   []*labels.Matcher
}

func addSelectFlags(fs *flag.FlagSet) func() (*selectArgs, error) {
	dir := fs.String("dir", "", "directory of the filesystem bucket holding the Parquet files")
	name := fs.String("name", "", "name of the converted block in the bucket")
	shards := fs.Int("shards", 0, "number of shards NAME/i.{labels,chunks}.parquet (0: all that exist)")
	mint := fs.Int64("mint", 0, "start of the time range in ms (inclusive)")
	maxt := fs.Int64("maxt", 0, "end of the time range in ms (inclusive)")
	var match matchFlags
	fs.Var(&match, "match", "PromQL series selector; repeatable, a series must match all of them")
	return func() (*selectArgs, error) {
		seen := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { seen[f.Name] = true })
		for _, req := range []string{"dir", "name", "mint", "maxt", "match"} {
			if !seen[req] {
				return nil, fmt.Errorf("%s: --%s is required", fs.Name(), req)
			}
		}
		if *maxt < *mint {
			return nil, fmt.Errorf("%s: --maxt %d is before --mint %d", fs.Name(), *maxt, *mint)
		}
		if *shards < 0 {
			return nil, fmt.Errorf("%s: --shards must not be negative", fs.Name())
		}
		a := &selectArgs{dir: *dir, name: *name, shards: *shards, mint: *mint, maxt: *maxt}
		for _, sel := range match {
			ms, err := parser.ParseMetricSelector(sel)
			if err != nil {
				return nil, fmt.Errorf("%s: --match %q: %w", fs.Name(), sel, err)
			}
			a.matchers = append(a.matchers, ms...)
		}
		return a, nil
	}
}

// countingBucket counts the read requests made to the bucket and the bytes they return.
type countingBucket struct {
	objstore.Bucket
	requests atomic.Int64
	bytes    atomic.Int64
}

func (b *countingBucket) reset() (requests, bytes int64) {
	return b.requests.Swap(0), b.bytes.Swap(0)
}

func (b *countingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.requests.Add(1)
	rc, err := b.Bucket.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, bytes: &b.bytes}, nil
}

func (b *countingBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	b.requests.Add(1)
	rc, err := b.Bucket.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, bytes: &b.bytes}, nil
}

func (b *countingBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	b.requests.Add(1)
	return b.Bucket.Attributes(ctx, name)
}

func (b *countingBucket) Exists(ctx context.Context, name string) (bool, error) {
	b.requests.Add(1)
	return b.Bucket.Exists(ctx, name)
}

type countingReader struct {
	io.ReadCloser
	bytes *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.bytes.Add(int64(n))
	return n, err
}

// reader holds a filesystem bucket, wrapped in a counter, and the shards opened from it.
type reader struct {
	args   *selectArgs
	bkt    *countingBucket
	raw    objstore.Bucket
	shards []*pqstorage.ParquetShardOpener
}

func newReader(a *selectArgs) (*reader, error) {
	if st, err := os.Stat(a.dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", a.dir)
	}
	raw, err := filesystem.NewBucket(a.dir)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", a.dir, err)
	}
	r := &reader{args: a, bkt: &countingBucket{Bucket: raw}, raw: raw}
	if r.args.shards == 0 {
		// Find the shards with the uncounted bucket: a user knows them from its own metadata.
		for ; ; r.args.shards++ {
			ok, err := raw.Exists(context.Background(), schema.LabelsPfileNameForShard(a.name, r.args.shards))
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
		}
		if r.args.shards == 0 {
			return nil, fmt.Errorf("no %s in %s", schema.LabelsPfileNameForShard(a.name, 0), a.dir)
		}
	}
	return r, nil
}

// open opens every shard through the library's bucket opener, reading the files' footers.
func (r *reader) open(ctx context.Context) error {
	r.closeShards()
	opener := pqstorage.NewParquetBucketOpener(r.bkt)
	for i := 0; i < r.args.shards; i++ {
		shard, err := pqstorage.NewParquetShardOpener(ctx, r.args.name, opener, opener, i)
		if err != nil {
			r.closeShards()
			return fmt.Errorf("open shard %d of %s: %w", i, r.args.name, err)
		}
		r.shards = append(r.shards, shard)
	}
	return nil
}

func (r *reader) closeShards() {
	for _, s := range r.shards {
		_ = s.Close()
	}
	r.shards = nil
}

func (r *reader) close() {
	r.closeShards()
	_ = r.raw.Close()
}

// sample is one sample of a selected series; h is false for a float sample.
type sample struct {
	t          int64
	v          float64
	h          bool
	count, sum float64
}

// selectSeries runs one Select through the library's queryable and calls fn with every
// series, in label order, and its samples within [mint, maxt].
func (r *reader) selectSeries(ctx context.Context, fn func(labels.Labels, []sample) error) error {
	shards := make([]pqstorage.ParquetShard, len(r.shards))
	for i, s := range r.shards {
		shards[i] = s
	}
	finder := func(context.Context, int64, int64) ([]pqstorage.ParquetShard, error) { return shards, nil }
	q, err := queryable.NewParquetQueryable(finder, nil, schema.NewPrometheusParquetChunksDecoder(chunkenc.NewPool()))
	if err != nil {
		return err
	}
	a := r.args
	querier, err := q.Querier(a.mint, a.maxt)
	if err != nil {
		return err
	}
	defer func() { _ = querier.Close() }()

	ss := querier.Select(ctx, true, &promstorage.SelectHints{Start: a.mint, End: a.maxt}, a.matchers...)
	var (
		it      chunkenc.Iterator
		samples []sample
	)
	for ss.Next() {
		series := ss.At()
		samples = samples[:0]
		it = series.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			var s sample
			switch vt {
			case chunkenc.ValFloat:
				s.t, s.v = it.At()
			case chunkenc.ValHistogram:
				t, h := it.AtHistogram(nil)
				s.t, s.h, s.count, s.sum = t, true, float64(h.Count), h.Sum
			case chunkenc.ValFloatHistogram:
				t, fh := it.AtFloatHistogram(nil)
				s.t, s.h, s.count, s.sum = t, true, fh.Count, fh.Sum
			default:
				return fmt.Errorf("series %s: unexpected value type %v", series.Labels(), vt)
			}
			if s.t < a.mint || s.t > a.maxt {
				continue
			}
			samples = append(samples, s)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("series %s: %w", series.Labels(), err)
		}
		if err := fn(series.Labels(), samples); err != nil {
			return err
		}
	}
	return ss.Err()
}

// ---- dump ----

func runDump(args []string) error {
	fs := newFlagSet("dump")
	getArgs := addSelectFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := getArgs()
	if err != nil {
		return err
	}
	r, err := newReader(a)
	if err != nil {
		return err
	}
	defer r.close()
	ctx := context.Background()
	if err := r.open(ctx); err != nil {
		return err
	}

	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	var prev labels.Labels
	first := true
	err = r.selectSeries(ctx, func(lset labels.Labels, samples []sample) error {
		if !first && labels.Compare(prev, lset) >= 0 {
			return fmt.Errorf("series out of order: %s after %s", lset, prev)
		}
		first, prev = false, lset.Copy()
		return writeSeries(w, lset, samples)
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// writeSeries writes one line:
// {"labels":{...},"floats":[[t,"v"],...],"histograms":[[t,{"count":"c","sum":"s"}],...]}
func writeSeries(w *bufio.Writer, lset labels.Labels, samples []sample) error {
	lbls := make(map[string]string, lset.Len())
	lset.Range(func(l labels.Label) { lbls[l.Name] = l.Value })
	lb, err := json.Marshal(lbls) // map keys come out sorted
	if err != nil {
		return err
	}
	_, _ = w.WriteString(`{"labels":`)
	_, _ = w.Write(lb)
	_, _ = w.WriteString(`,"floats":[`)
	n := 0
	for _, s := range samples {
		if s.h {
			continue
		}
		if n > 0 {
			_ = w.WriteByte(',')
		}
		n++
		fmt.Fprintf(w, `[%d,"%s"]`, s.t, formatFloat(s.v))
	}
	_, _ = w.WriteString(`],"histograms":[`)
	n = 0
	for _, s := range samples {
		if !s.h {
			continue
		}
		if n > 0 {
			_ = w.WriteByte(',')
		}
		n++
		fmt.Fprintf(w, `[%d,{"count":"%s","sum":"%s"}]`, s.t, formatFloat(s.count), formatFloat(s.sum))
	}
	_, err = w.WriteString("]}\n")
	return err
}

// ---- bench ----

func runBench(args []string) error {
	fs := newFlagSet("bench")
	getArgs := addSelectFlags(fs)
	n := fs.Int("n", 0, "number of times the select runs")
	reopen := fs.Bool("reopen", false, "open the shards (read the footers) in every run, not once before them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := getArgs()
	if err != nil {
		return err
	}
	if *n <= 0 {
		return errors.New("bench: --n must be positive")
	}
	r, err := newReader(a)
	if err != nil {
		return err
	}
	defer r.close()
	ctx := context.Background()

	var openRequests, openBytes int64
	if !*reopen {
		if err := r.open(ctx); err != nil {
			return err
		}
		openRequests, openBytes = r.bkt.reset()
	}

	var series, samples int64
	var elapsed time.Duration
	for i := 0; i < *n; i++ {
		var nSeries, nSamples int64
		start := time.Now()
		if *reopen {
			if err := r.open(ctx); err != nil {
				return err
			}
		}
		err := r.selectSeries(ctx, func(_ labels.Labels, s []sample) error {
			nSeries++
			nSamples += int64(len(s))
			return nil
		})
		elapsed += time.Since(start)
		if err != nil {
			return err
		}
		if i > 0 && (nSeries != series || nSamples != samples) {
			return fmt.Errorf("bench: run %d selected %d series and %d samples, run 0 %d and %d", i, nSeries, nSamples, series, samples)
		}
		series, samples = nSeries, nSamples
	}
	requests, bytes := r.bkt.reset()
	ops := float64(*n)
	out, err := json.Marshal(struct {
		Series              int64   `json:"series"`
		Samples             int64   `json:"samples"`
		NsPerOp             float64 `json:"ns_per_op"`
		BucketRequestsPerOp float64 `json:"bucket_requests_per_op"`
		BucketBytesPerOp    float64 `json:"bucket_bytes_per_op"`
		Ops                 int     `json:"ops"`
		Shards              int     `json:"shards"`
		Reopen              bool    `json:"reopen"`
		OpenBucketRequests  int64   `json:"open_bucket_requests"`
		OpenBucketBytes     int64   `json:"open_bucket_bytes"`
	}{
		Series:              series,
		Samples:             samples,
		NsPerOp:             float64(elapsed.Nanoseconds()) / ops,
		BucketRequestsPerOp: float64(requests) / ops,
		BucketBytesPerOp:    float64(bytes) / ops,
		Ops:                 *n,
		Shards:              a.shards,
		Reopen:              *reopen,
		OpenBucketRequests:  openRequests,
		OpenBucketBytes:     openBytes,
	})
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
