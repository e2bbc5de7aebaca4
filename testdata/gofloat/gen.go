// Command gen writes the reference table that holds Gauntlet's float formatting to Go's:
// for each float64 it prints strconv.FormatFloat(x, fmt, -1, 64) for fmt 'g', 'e' and 'f'.
//
// The committed table was made with Debian's Go 1.19 (`apt-get install golang-go`), the Go that
// builds Debian's promtool 2.42, from the repository root:
//
//	go run testdata/gofloat/gen.go > testdata/gofloat/formatfloat.tsv
//
// The values are deterministic (a fixed seed), so running it again gives the same table.
// `-n` scales the random classes up for a longer one-off comparison; `-seed` changes them.
//
// Each data line is: class, the float64 bits as 16 hex digits, then the 'g', 'e' and 'f'
// strings, tab-separated. Lines starting with '#' are comments. Classes:
//
//	bits       uniformly random 64-bit patterns (any exponent, NaN and Inf included)
//	special    zeros, infinities, NaNs, the extreme finite values and their neighbours
//	subnormal  random subnormals, the smallest and the largest
//	pow2       every power of two a float64 holds, and its neighbours for some
//	pow10      the float64 nearest each power of ten, and its two neighbours
//	threshold  values at and next to where a notation changes: 'g' below 1e-4 and from 1e6,
//	           JSON encoders below 1e-6 and from 1e21, and the ends of Gauntlet's fast paths
//	counter    large counter values: whole numbers up to 2^63, and numbers from 1e14 to 2^57
//	           plus a multiple of 1/8, whose %g is a long mantissa in exponent form
//	everyday   short decimals such as 0.1, 12.5 and 99.95
//	nonunique  the shortest round-tripping form is not unique: another number of as many
//	           digits also reads back as x, but is further from x than the one Go prints
//	tie        the shortest form is not unique and the two candidates are equally far from x
//	           (Go keeps the one whose last digit is even)
//
// gen checks on the way that fmt's %v and %g print what FormatFloat(x, 'g', -1, 64) does.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"os"
	"strconv"
	"strings"
)

var (
	scale = flag.Int("n", 1, "multiplies the size of the random classes")
	seed  = flag.Int64("seed", 1, "seed of the random classes")
)

type table struct {
	w    *bufio.Writer
	seen map[uint64]bool
}

// add prints one row for x unless x was printed already.
func (t *table) add(class string, x float64) {
	b := math.Float64bits(x)
	if t.seen[b] {
		return
	}
	t.seen[b] = true
	g := strconv.FormatFloat(x, 'g', -1, 64)
	if v := fmt.Sprintf("%v", x); v != g {
		panic(fmt.Sprintf("%%v of %016x is %s, 'g' is %s", b, v, g))
	}
	if v := fmt.Sprintf("%g", x); v != g {
		panic(fmt.Sprintf("%%g of %016x is %s, 'g' is %s", b, v, g))
	}
	fmt.Fprintf(t.w, "%s\t%016x\t%s\t%s\t%s\n", class, b, g,
		strconv.FormatFloat(x, 'e', -1, 64), strconv.FormatFloat(x, 'f', -1, 64))
}

// neighbours returns x and the n float64 values on either side of it (finite ones only).
func neighbours(x float64, n int) []float64 {
	out := []float64{x}
	up, down := x, x
	for i := 0; i < n; i++ {
		up = math.Nextafter(up, math.Inf(1))
		down = math.Nextafter(down, math.Inf(-1))
		for _, v := range []float64{up, down} {
			if !math.IsInf(v, 0) {
				out = append(out, v)
			}
		}
	}
	return out
}

// shortestKind tells whether the shortest form of finite x is unique ("unique"), shared with
// another candidate of as many digits that is further from x ("nonunique"), or shared with
// one exactly as far from x ("tie").
func shortestKind(x float64) string {
	if x == 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return "unique"
	}
	s := strconv.FormatFloat(math.Abs(x), 'e', -1, 64)
	mant, exp, _ := strings.Cut(s, "e")
	digits := strings.Replace(mant, ".", "", 1)
	e, err := strconv.Atoi(exp)
	if err != nil {
		panic(err)
	}
	// x's shortest form is d * 10^p.
	p := e - (len(digits) - 1)
	d, _ := new(big.Int).SetString(digits, 10)
	exact := new(big.Rat).SetFloat64(math.Abs(x))
	pow := func(k int) *big.Rat {
		r := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(k))), nil))
		if k < 0 {
			r.Inv(r)
		}
		return r
	}
	dist := func(m *big.Int) *big.Rat {
		v := new(big.Rat).Mul(new(big.Rat).SetInt(m), pow(p))
		return v.Abs(v.Sub(v, exact))
	}
	kind := "unique"
	for _, delta := range []int64{-1, 1} {
		alt := new(big.Int).Add(d, big.NewInt(delta))
		altText := alt.String()
		if len(altText) != len(digits) {
			continue
		}
		back, err := strconv.ParseFloat(altText+"e"+strconv.Itoa(p), 64)
		if err != nil || back != math.Abs(x) {
			continue
		}
		switch dist(alt).Cmp(dist(d)) {
		case 0:
			return "tie"
		case -1:
			panic(fmt.Sprintf("%016x: %s is closer than %s", math.Float64bits(x), altText, digits))
		default:
			kind = "nonunique"
		}
	}
	return kind
}

func abs(k int) int {
	if k < 0 {
		return -k
	}
	return k
}

// tieCandidate returns a float64 in binade [2^e, 2^(e+1)) whose exact value has just enough
// binary fraction digits that its last decimal digit, a 5, sits one place below the unit of its
// shortest form: the shape every tie has.
func tieCandidate(r *rand.Rand, e int) (float64, bool) {
	ulp := e - 52
	// j: binary fraction digits, the smallest with 10^(1-j) <= 2^ulp.
	j := 1
	for math.Pow(10, float64(1-j)) > math.Pow(2, float64(ulp)) {
		j++
	}
	if j > 52-e || e+j < 0 {
		return 0, false
	}
	// An odd k with k*2^-j in the binade.
	lo := uint64(1) << uint(e+j)
	k := lo + uint64(r.Int63n(int64(lo)))
	k |= 1
	return math.Ldexp(float64(k), -j), true
}

func main() {
	flag.Parse()
	r := rand.New(rand.NewSource(*seed))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintf(out, "# strconv.FormatFloat(x, fmt, -1, 64) for fmt 'g', 'e', 'f', from testdata/gofloat/gen.go -n %d -seed %d\n", *scale, *seed)
	fmt.Fprintf(out, "# class\tbits\tg\te\tf\n")
	t := &table{w: out, seen: map[uint64]bool{}}

	// special
	for _, x := range []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(),
		math.Float64frombits(0x7ff0000000000001), math.Float64frombits(0xfff8000000000001),
		math.Float64frombits(0x7ff8000000000001), // Prometheus's stale marker
		1, -1, 0.1, 0.2, 0.3, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, math.Pi, math.E, 100, 1e15, 1e16, 1e17} {
		t.add("special", x)
	}
	for _, x := range []float64{math.MaxFloat64, math.SmallestNonzeroFloat64, 0x1p-1022,
		1 << 53, 1 << 54, 1 << 63, 1 << 64, math.MaxInt64, math.MinInt64} {
		for _, v := range neighbours(x, 3) {
			t.add("special", v)
			t.add("special", -v)
		}
	}

	// subnormal
	largestSub := math.Float64frombits(0x000fffffffffffff)
	for _, v := range append(neighbours(math.SmallestNonzeroFloat64, 4), neighbours(largestSub, 4)...) {
		t.add("subnormal", v)
	}
	for i := 0; i < 300**scale; i++ {
		b := uint64(r.Int63()) & 0x000fffffffffffff
		// Mantissas of every length, not only long ones.
		b >>= uint(r.Intn(52))
		x := math.Float64frombits(b)
		if r.Intn(2) == 0 {
			x = -x
		}
		t.add("subnormal", x)
	}

	// pow2
	for e := -1074; e <= 1023; e++ {
		x := math.Ldexp(1, e)
		t.add("pow2", x)
		if e%7 == 0 {
			for _, v := range neighbours(x, 1) {
				t.add("pow2", v)
			}
		}
	}

	// pow10
	for k := -323; k <= 308; k++ {
		x, err := strconv.ParseFloat("1e"+strconv.Itoa(k), 64)
		if err != nil {
			panic(err)
		}
		for _, v := range neighbours(x, 1) {
			t.add("pow10", v)
		}
	}

	// threshold: where 'g' turns to exponent form (a decimal exponent below -4 or from 6 on,
	// for the shortest digits), where JSON encoders do (|x| < 1e-6 or >= 1e21), and where
	// Gauntlet's fast paths end (1e-5 and 1e16 for ryu's plain form, 2^53 for whole numbers).
	for _, s := range []string{"1e-5", "1e-4", "1e-6", "1e-7", "1e6", "1e5", "1e21", "1e20", "1e22",
		"9.9999e-5", "9.99999e5", "999999.5", "999999.9999999999", "0.00009999999999999999",
		"0.000099999999999999995", "1e15", "1e16", "9007199254740993"} {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			panic(err)
		}
		for _, v := range neighbours(x, 3) {
			t.add("threshold", v)
			t.add("threshold", -v)
		}
	}

	// counter
	for i := 0; i < 800**scale; i++ {
		// Whole numbers of every size up to 2^63.
		bitsLen := 20 + r.Intn(44)
		n := uint64(r.Int63()) >> uint(63-bitsLen)
		t.add("counter", float64(n))
	}
	for i := 0; i < 800**scale; i++ {
		// 1e14..2^57 with fractions of 1/2, 1/4, 1/8.
		whole := 1e14 + r.Float64()*(1<<57-1e14)
		frac := float64(r.Intn(8)) / 8
		t.add("counter", math.Floor(whole)+frac)
	}

	// everyday
	for i := 0; i < 400**scale; i++ {
		n := r.Int63n(1_000_000_000)
		s := r.Intn(12)
		x, _ := strconv.ParseFloat(fmt.Sprintf("%de-%d", n, s), 64)
		if r.Intn(4) == 0 {
			x = -x
		}
		t.add("everyday", x)
	}

	// tie, nonunique: searched among tie-shaped values in every binade that has them, and
	// among random values near 1e15..1e17 and in [1, 2).
	ties, nonunique := 0, 0
	for tries := 0; (ties < 1500**scale || nonunique < 600**scale) && tries < 2_000_000**scale; tries++ {
		var x float64
		switch tries % 3 {
		case 0, 1:
			e := -1022 + r.Intn(1073)
			v, ok := tieCandidate(r, e)
			if !ok {
				continue
			}
			x = v
		default:
			base := []float64{1, 1e15, 1e16, 3e16, 1e17, 4.5e15}[r.Intn(6)]
			x = base + r.Float64()*base
		}
		if r.Intn(2) == 0 {
			x = -x
		}
		switch shortestKind(x) {
		case "tie":
			if ties < 1500**scale {
				t.add("tie", x)
				ties++
			}
		case "nonunique":
			if nonunique < 600**scale {
				t.add("nonunique", x)
				nonunique++
			}
		}
	}

	// bits
	for i := 0; i < 4000**scale; i++ {
		t.add("bits", math.Float64frombits(r.Uint64()))
	}
}
