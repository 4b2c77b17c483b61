#include "ort_math.hpp"

#include "cpu.hpp"

#include <cmath>
#include <cstring>

namespace eigentone {
namespace ortm {
namespace {

inline float from_bits(int32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline int32_t to_bits(float f) {
    int32_t bits;
    std::memcpy(&bits, &f, 4);
    return bits;
}

template <bool Fused>
__attribute__((always_inline)) inline float madd(float a, float b, float c) {
    if constexpr (Fused) {
        return __builtin_fmaf(a, b, c);
    } else {
        return a * b + c;   // -ffp-contract=off: two roundings
    }
}

// MLAS exp: x = m ln2 + r (two-part ln2), polynomial in r, 2^m rebuilt in two factors to reach [-150, 128].
template <bool F>
__attribute__((always_inline)) inline float exp_one(float x) {
    const float lower = -103.9720840454f, upper = 88.7762626647950f, bias = 12582912.0f;
    x = x < lower ? lower : (x > upper ? upper : x);   // NaN passes through as MLAS's min/max order does
    float biased = madd<F>(x, 1.44269504088896341f, bias);
    float m = biased - bias;
    x = madd<F>(m, -6.93145752e-1f, x);
    x = madd<F>(m, -1.42860677e-6f, x);
    int32_t overflow = int32_t(uint32_t(to_bits(biased)) << 23);
    int32_t normal = overflow;
    const int32_t min_exp = int32_t(0xC1000000u), max_exp = 0x3F800000;
    normal = normal < max_exp ? normal : max_exp;
    normal = normal > min_exp ? normal : min_exp;
    overflow = int32_t(uint32_t(overflow) - uint32_t(normal) + uint32_t(max_exp));
    normal = int32_t(uint32_t(normal) + uint32_t(max_exp));
    float p = 0x1.694000p-10f;
    p = madd<F>(p, x, 0x1.125edcp-7f);
    p = madd<F>(p, x, 0x1.555b5ap-5f);
    p = madd<F>(p, x, 0x1.555450p-3f);
    p = madd<F>(p, x, 0x1.fffff6p-2f);
    p = madd<F>(p, x, 1.0f);
    float over = from_bits(overflow);
    x = x * over;
    p = madd<F>(p, x, over);
    return p * from_bits(normal);
}

// MLAS tanh: clamp to [-9, 9], odd rational polynomial (Eigen's coefficients).
template <bool F>
__attribute__((always_inline)) inline float tanh_one(float x) {
    x = x < -9.0f ? -9.0f : x;
    x = x > 9.0f ? 9.0f : x;
    float x2 = x * x;
    float p = madd<F>(x2, -2.76076847742355e-16f, 2.00018790482477e-13f);
    p = madd<F>(p, x2, -8.60467152213735e-11f);
    p = madd<F>(p, x2, 5.12229709037114e-08f);
    p = madd<F>(p, x2, 1.48572235717979e-05f);
    p = madd<F>(p, x2, 6.37261928875436e-04f);
    p = madd<F>(p, x2, 4.89352455891786e-03f);
    p = p * x;
    float q = madd<F>(x2, 1.19825839466702e-06f, 1.18534705686654e-04f);
    q = madd<F>(q, x2, 2.26843463243900e-03f);
    q = madd<F>(q, x2, 4.89352518554385e-03f);
    return p / q;
}

// MLAS erf: odd polynomial below 0.921875, 1 - exp(-poly(|x|)) above (the erff of Norbert Juffa's answer).
template <bool F>
__attribute__((always_inline)) inline float erf_one(float x) {
    float a = std::fabs(x);
    float result;
    if (a > 0.921875f) {
        float r = 1.72948930e-5f;
        r = madd<F>(r, a, -3.83208680e-4f);
        r = madd<F>(r, a, 3.88393435e-3f);
        r = madd<F>(r, a, -2.42545605e-2f);
        r = madd<F>(r, a, 1.06777847e-1f);
        r = madd<F>(r, a, 6.34846687e-1f);
        r = madd<F>(r, a, 1.28717512e-1f);
        r = madd<F>(r, a, a);
        float e = -r;
        e = e > -88.3762626647949f ? e : -88.3762626647949f;
        const float c = 1.25829120e+7f;
        float k = madd<F>(1.44269504088896341f, e, c);
        k = k - c;
        float f = madd<F>(k, -6.93145752e-1f, e);
        f = madd<F>(k, -1.42860677e-6f, f);
        float y = 1.38319808e-3f;
        y = madd<F>(y, f, 8.37550033e-3f);
        y = madd<F>(y, f, 4.16689515e-2f);
        y = madd<F>(y, f, 1.66664466e-1f);
        y = madd<F>(y, f, 4.99999851e-1f);
        y = madd<F>(y, f, 1.0f);
        y = madd<F>(y, f, 1.0f);
        y = y * from_bits(int32_t(uint32_t(int32_t(k) + 127) << 23));
        result = 1.0f - y;
    } else {
        float s = a * a;
        float r = -5.99104969e-4f;
        r = madd<F>(r, s, 4.99339588e-3f);
        r = madd<F>(r, s, -2.67667342e-2f);
        r = madd<F>(r, s, 1.12818025e-1f);
        r = madd<F>(r, s, -3.76124859e-1f);
        r = madd<F>(r, s, 1.28379151e-1f);
        result = madd<F>(r, a, a);
    }
    return std::signbit(x) ? -result : result;
}

// Eigen's plog for float: mantissa in [sqrt(1/2), sqrt(2)), rational (3,3) approximation of log(1+x).
float log_one(float v) {
    if (!(v > 0.0f) || std::isinf(v)) return std::log(v);   // NaN, 0, negatives, inf: the IEEE answers
    int e_int;
    float x = std::frexp(v, &e_int);   // [0.5, 1)
    float e = float(e_int);
    bool below = x < 0.707106781186547524f;
    float tmp = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + tmp;
    float p = 0.18256296349849254f;
    p = p * x + 1.0000000190281063f;
    p = p * x + 1.0000000190281136f;
    p = x * p;
    float q = 0.049616247954120038f;
    q = q * x + 0.59923249590823520f;
    q = q * x + 1.4999999999999927f;
    q = q * x + 1.0f;
    x = p / q;
    return e * 0.693147180559945309f + x;
}

// Eigen's psincos_float without FMA: octant from x * 2/pi, 4-part Cody-Waite reduction, two polynomials.
float sincos_one(float v, bool sine) {
    float x = std::fabs(v);
    if (!(x < (sine ? 25966.0f : 18838.0f)))   // Eigen switches to a slow exact path there (and NaN)
        return float(sine ? std::sin(double(v)) : std::cos(double(v)));
    float y = x * 0.636619746685028076171875f;
    float y_round = y + 12582912.0f;
    int32_t y_int = to_bits(y_round);
    y = y_round - 12582912.0f;
    x = y * -1.5703125f + x;
    x = y * -0.000483989715576171875f + x;
    x = y * 1.62865035235881805419921875e-07f + x;
    x = y * 5.5644315544167710640977020375430583953857421875e-11f + x;
    int32_t sign = sine ? int32_t(uint32_t(to_bits(v)) ^ (uint32_t(y_int) << 30)) : int32_t(uint32_t(y_int + 1) << 30);
    sign &= int32_t(0x80000000u);
    bool even = (y_int & 1) == 0;
    float x2 = x * x;
    float c = 2.4372266125283204019069671630859375e-05f;
    c = c * x2 + -0.00138865201734006404876708984375f;
    c = c * x2 + 0.041666619479656219482421875f;
    c = c * x2 + -0.5f;
    c = c * x2 + 1.0f;
    float s = -0.0001959234114083702898469196984621021329076029360294342041015625f;
    s = s * x2 + 0.0083326873655616851693794799871284340042620897293090820312500000f;
    s = s * x2 + -0.1666666203982298255503735617821803316473960876464843750000000000f;
    s = s * x2;
    s = s * x + x;
    float r = sine ? (even ? s : c) : (even ? c : s);
    return from_bits(to_bits(r) ^ sign);
}

__attribute__((target("fma"))) void exp_fma(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = exp_one<true>(x[k]);
}
void exp_plain(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = exp_one<false>(x[k]);
}
__attribute__((target("fma"))) void tanh_fma(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = tanh_one<true>(x[k]);
}
void tanh_plain(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = tanh_one<false>(x[k]);
}
__attribute__((target("fma"))) void erf_fma(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = erf_one<true>(x[k]);
}
void erf_plain(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = erf_one<false>(x[k]);
}

}  // namespace

void exp(const float* x, float* y, int64_t n) { cpu::fma() ? exp_fma(x, y, n) : exp_plain(x, y, n); }
void tanh(const float* x, float* y, int64_t n) { cpu::fma() ? tanh_fma(x, y, n) : tanh_plain(x, y, n); }
void erf(const float* x, float* y, int64_t n) { cpu::fma() ? erf_fma(x, y, n) : erf_plain(x, y, n); }
// Eigen evaluates packets of 4 floats and the last n % 4 elements of a tensor with the scalar std:: function.
void log(const float* x, float* y, int64_t n) {
    int64_t packed = n - n % 4;
    for (int64_t k = 0; k < packed; ++k) y[k] = log_one(x[k]);
    for (int64_t k = packed; k < n; ++k) y[k] = std::log(x[k]);
}
void cos(const float* x, float* y, int64_t n) {
    int64_t packed = n - n % 4;
    for (int64_t k = 0; k < packed; ++k) y[k] = sincos_one(x[k], false);
    for (int64_t k = packed; k < n; ++k) y[k] = std::cos(x[k]);
}
void sin(const float* x, float* y, int64_t n) {
    int64_t packed = n - n % 4;
    for (int64_t k = 0; k < packed; ++k) y[k] = sincos_one(x[k], true);
    for (int64_t k = packed; k < n; ++k) y[k] = std::sin(x[k]);
}

}  // namespace ortm
}  // namespace eigentone
