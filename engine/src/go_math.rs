//! Logarithms and powers of two computed as Go's `math` package computes them on x86-64, for
//! results held to the last bit against Prometheus: `histogram_quantile` and
//! `histogram_fraction` interpolate inside exponential buckets with `Log2` and `Exp2`, PromQL's
//! `ln`, `log2` and `log10` are Go's `Log`, `Log2` and `Log10`, and the
//! platform's libm (correctly rounded more often) lands one unit in the last place away from Go
//! often enough to change the printed value.
//!
//! Go's `Log` on x86-64 is the classic fdlibm algorithm (argument reduced to [√2/2, √2), a
//! degree-14 odd polynomial in `s = f/(2+f)`); `Log2` splits off the binary exponent with
//! `Frexp` and is exact on powers of two; `Exp2` reduces to `e^r · 2^k` with `|r| ≤ ln 2 / 2`
//! and the fdlibm rational approximation. None of them fuses multiply-adds (Go does not on
//! x86-64), and neither does Rust unless asked, so the same operations in the same order give
//! the same bits.

/// ln 2 split in a high part with trailing zero bits and a low remainder.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `x = frac · 2^exp` with `|frac|` in [0.5, 1); `x` itself with exponent 0 for zeros,
/// infinities and NaN (Go's `math.Frexp`).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    // Subnormals are scaled into the normal range first.
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE {
        (x * f64::from_bits(0x4350_0000_0000_0000), -54) // 2^54
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022 + bias;
    let frac = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (frac, exp)
}

/// `frac · 2^exp` (Go's `math.Ldexp`): exact unless the result overflows (±Inf), or falls
/// below the normal range, where it is rounded once to a subnormal or signed zero.
pub fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (frac, e) = frexp(frac);
    let exp = exp.saturating_add(i64::from(e));
    if exp > 1024 {
        return f64::INFINITY.copysign(frac);
    }
    // Below half the smallest subnormal.
    if exp < -1074 {
        return 0.0f64.copysign(frac);
    }
    // frac in [0.5, 1): frac · 2^exp = (2·frac) · 2^(exp-1), with 2·frac in [1, 2).
    let e = exp - 1;
    let mantissa = frac.to_bits() & ((1u64 << 52) - 1);
    let sign = frac.to_bits() & (1u64 << 63);
    if e >= -1022 {
        return f64::from_bits(sign | (((e + 1023) as u64) << 52) | mantissa);
    }
    // Subnormal: scale in two exact steps so the only rounding is the last multiplication.
    let normal = f64::from_bits(sign | (((e + 53 + 1023) as u64) << 52) | mantissa);
    normal * f64::from_bits(0x3ca0_0000_0000_0000) // 2^-53
}

/// Natural logarithm as Go's `math.Log` computes it on x86-64.
pub fn log(x: f64) -> f64 {
    const L1: f64 = f64::from_bits(0x3fe5_5555_5555_5593);
    const L2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04);
    const L3: f64 = f64::from_bits(0x3fd2_4924_9422_9359);
    const L4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
    const L5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de);
    const L6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f);
    const L7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244);
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Binary logarithm as Go's `math.Log2`: the exponent of a power of two exactly, otherwise
/// `log(frac) / ln 2 + exp`.
pub fn log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    log(frac) * (1.0 / std::f64::consts::LN_2) + f64::from(exp)
}

/// Decimal logarithm as Go's `math.Log10`: `log(x) / ln 10`, the division as a product.
pub fn log10(x: f64) -> f64 {
    log(x) * (1.0 / std::f64::consts::LN_10)
}

/// `2^x` as Go's `math.Exp2` computes it on x86-64.
pub fn exp2(x: f64) -> f64 {
    const OVERFLOW: f64 = 1.023_999_999_999_999_9e3;
    const UNDERFLOW: f64 = -1.074e3;
    if x.is_nan() {
        return x;
    }
    if x > OVERFLOW {
        return f64::INFINITY;
    }
    if x < UNDERFLOW {
        return 0.0;
    }
    // x = k + t with |t| ≤ 1/2; 2^t = e^(t·ln 2), carried as hi - lo.
    let k = if x > 0.0 {
        (x + 0.5) as i32
    } else if x < 0.0 {
        (x - 0.5) as i32
    } else {
        0
    };
    let t = x - f64::from(k);
    let hi = t * LN2_HI;
    let lo = -t * LN2_LO;
    expmulti(hi, lo, k)
}

/// `e^r · 2^k` for `r = hi - lo`, `|r| ≤ ln 2 / 2`.
fn expmulti(hi: f64, lo: f64, k: i32) -> f64 {
    const P1: f64 = f64::from_bits(0x3fc5_5555_5555_5555);
    const P2: f64 = f64::from_bits(0xbf66_c16c_16be_bd93);
    const P3: f64 = f64::from_bits(0x3f11_566a_af25_de2c);
    const P4: f64 = f64::from_bits(0xbebb_bd41_c5d2_6bf1);
    const P5: f64 = f64::from_bits(0x3e66_3769_72be_a4d0);
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    ldexp(y, i64::from(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    #[allow(clippy::excessive_precision)] // the decimals as fdlibm documents them
    fn constants_are_the_documented_decimals() {
        assert_eq!(LN2_HI, 6.931_471_803_691_238_164_90e-1);
        assert_eq!(LN2_LO, 1.908_214_929_270_587_700_02e-10);
        assert_eq!(LN2_HI + LN2_LO, std::f64::consts::LN_2);
    }

    #[test]
    fn frexp_and_ldexp_round_trip() {
        for x in [
            1.0,
            -3.5,
            0.1,
            1e300,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            -2.5e-310,
            f64::MAX,
        ] {
            let (f, e) = frexp(x);
            assert!((0.5..1.0).contains(&f.abs()), "{x}: {f}");
            assert_eq!(ldexp(f, i64::from(e)), x, "{x}");
        }
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
        assert_eq!(ldexp(-1.0, -1100), -0.0);
        assert_eq!(ldexp(1.0, -1074), 5e-324);
        assert_eq!(ldexp(0.75, -1074), 5e-324); // three quarters of the smallest subnormal
        assert_eq!(ldexp(0.5, -1074), 0.0); // half of it, a tie, rounds to even (zero)
        assert_eq!(ldexp(0.5, -1075), 0.0);
        assert_eq!(ldexp(0.5, i64::MAX), f64::INFINITY);
    }

    #[test]
    fn special_values() {
        assert!(log(f64::NAN).is_nan());
        assert!(log(-1.0).is_nan());
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert_eq!(log(f64::INFINITY), f64::INFINITY);
        assert_eq!(log(1.0), 0.0);
        assert_eq!(exp2(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp2(f64::NEG_INFINITY), 0.0);
        assert!(exp2(f64::NAN).is_nan());
        assert_eq!(exp2(1024.0), f64::INFINITY);
    }

    #[test]
    fn powers_of_two_are_exact() {
        for k in -1074..=1023 {
            let p = ldexp(1.0, i64::from(k));
            assert_eq!(log2(p), f64::from(k), "{k}");
            assert_eq!(exp2(f64::from(k)), p, "{k}");
        }
    }

    #[test]
    fn close_to_the_platform_functions() {
        // A spread of arguments: Log and Exp2 are accurate to under one unit in the last place,
        // so they may differ from libm by at most one.
        let mut x = 1.0e-6f64;
        while x < 1.0e6 {
            assert!(ulps(log(x), x.ln()) <= 1, "log {x}");
            // Go's Log2 adds the exponent after the logarithm of the fraction, so near 1 its
            // error is absolute (a few units of 2^-52), not relative.
            assert!(
                (log2(x) - x.log2()).abs() < 1e-15 * x.log2().abs().max(1.0),
                "log2 {x}"
            );
            // The product with 1/ln 10 rounds once more, relative to the result's size.
            let rel = ((log10(x) - x.log10()) / x.log10()).abs();
            assert!(rel < 1e-15, "log10 {x}: {rel}");
            x *= 1.0137;
        }
        let mut y = -60.0f64;
        while y < 60.0 {
            assert!(ulps(exp2(y), y.exp2()) <= 1, "exp2 {y}");
            y += 0.0173;
        }
    }
}
