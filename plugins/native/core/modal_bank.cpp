#include "modal_bank.hpp"

#include "cpu.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

namespace eigentone {
namespace {

// ---- the per-sample recurrence of one voice: scratch[k] = sum_m Re(w_m), then w <- p w ----------------------
// w <- p w in the engine's form (engine/modal_bank.py rotated): p = c + id as (c, e = d - c, f = c + d),
// k = c (a + b), a' = fma(-b, f, k), b' = fma(a, e, k) for w = a + ib. Every mode's arithmetic is the same in each
// version; the vector versions add the sum over modes in another order than the engine (whose vectorised sum is
// not reproducible anyway), always the same order for a given sample, so the output does not depend on how a
// block is cut into calls.

inline void step1(float& a, float& b, float c, float e, float f) {
    float k = c * (a + b);
    float re = std::fma(-b, f, k);
    b = std::fma(a, e, k);
    a = re;
}

void run_voice_scalar(float* wr, float* wi, const float* pc, const float* pe, const float* pf, int n_modes,
                      float* scratch, int n) {
    for (int k = 0; k < n; ++k) {
        float acc = 0.0f;
        for (int m = 0; m < n_modes; ++m) {
            acc += wr[m];
            step1(wr[m], wi[m], pc[m], pe[m], pf[m]);
        }
        scratch[k] = acc;
    }
}

__attribute__((target("avx2,fma"))) inline void step8(__m256& a, __m256& b, __m256 c, __m256 e, __m256 f) {
    __m256 k = _mm256_mul_ps(c, _mm256_add_ps(a, b));
    __m256 re = _mm256_fnmadd_ps(b, f, k);
    b = _mm256_fmadd_ps(a, e, k);
    a = re;
}

__attribute__((target("avx2"))) inline void rotate8(__m256& a, __m256& b, __m256 c, __m256 d) {
    __m256 re = _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, d));
    b = _mm256_add_ps(_mm256_mul_ps(a, d), _mm256_mul_ps(b, c));
    a = re;
}

__attribute__((target("avx2"))) inline float sum8(__m256 v) {
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    return _mm_cvtss_f32(half);
}

// The modes left over after the last full vector (n_modes not a multiple of the width), U samples each, added
// to the vector sums ``total``; the per-sample sums go to scratch.
template <int U>
inline void scalar_tail(float* wr, float* wi, const float* pc, const float* pe, const float* pf, int from,
                        int n_modes, float* total, float* scratch) {
    for (int m = from; m < n_modes; ++m) {
        float a = wr[m], b = wi[m];
        for (int j = 0; j < U; ++j) {
            total[j] += a;
            step1(a, b, pc[m], pe[m], pf[m]);
        }
        wr[m] = a;
        wi[m] = b;
    }
    for (int j = 0; j < U; ++j) scratch[j] = total[j];
}

// U samples per pass over the modes (as the engine's kernel does), eight modes per vector.
template <int U>
__attribute__((target("avx2,fma"), always_inline)) inline void avx2_pass(float* wr, float* wi, const float* pc,
                                                                         const float* pe, const float* pf,
                                                                         int n_modes, float* scratch) {
    int wide = n_modes - n_modes % 8;
    __m256 acc[U];
    for (int j = 0; j < U; ++j) acc[j] = _mm256_setzero_ps();
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(wr + m), b = _mm256_loadu_ps(wi + m);
        __m256 c = _mm256_loadu_ps(pc + m), e = _mm256_loadu_ps(pe + m), f = _mm256_loadu_ps(pf + m);
#pragma GCC unroll 4
        for (int j = 0; j < U; ++j) {   // unrolled: the sums stay in registers (at -O2 GCC kept them in memory)
            acc[j] = _mm256_add_ps(acc[j], a);
            step8(a, b, c, e, f);
        }
        _mm256_storeu_ps(wr + m, a);
        _mm256_storeu_ps(wi + m, b);
    }
    float total[U];
    for (int j = 0; j < U; ++j) total[j] = sum8(acc[j]);
    scalar_tail<U>(wr, wi, pc, pe, pf, wide, n_modes, total, scratch);
}

__attribute__((target("avx2,fma"))) void run_voice_avx2(float* wr, float* wi, const float* pc, const float* pe,
                                                        const float* pf, int n_modes, float* scratch, int n) {
    int k = 0;
    for (; k + 4 <= n; k += 4) avx2_pass<4>(wr, wi, pc, pe, pf, n_modes, scratch + k);
    for (; k < n; ++k) avx2_pass<1>(wr, wi, pc, pe, pf, n_modes, scratch + k);
}

__attribute__((target("avx512f"))) inline void step16(__m512& a, __m512& b, __m512 c, __m512 e, __m512 f) {
    __m512 k = _mm512_mul_ps(c, _mm512_add_ps(a, b));
    __m512 re = _mm512_fnmadd_ps(b, f, k);
    b = _mm512_fmadd_ps(a, e, k);
    a = re;
}

__attribute__((target("avx512f,avx2"))) inline float sum16(__m512 v) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    return sum8(_mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8)));
}

template <int U>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void avx512_pass(float* wr, float* wi,
                                                                                   const float* pc, const float* pe,
                                                                                   const float* pf, int n_modes,
                                                                                   float* scratch) {
    int wide = n_modes - n_modes % 16;
    __m512 acc[U];
    for (int j = 0; j < U; ++j) acc[j] = _mm512_setzero_ps();
    for (int m = 0; m < wide; m += 16) {
        __m512 a = _mm512_loadu_ps(wr + m), b = _mm512_loadu_ps(wi + m);
        __m512 c = _mm512_loadu_ps(pc + m), e = _mm512_loadu_ps(pe + m), f = _mm512_loadu_ps(pf + m);
#pragma GCC unroll 4
        for (int j = 0; j < U; ++j) {   // unrolled: the sums stay in registers (at -O2 GCC kept them in memory)
            acc[j] = _mm512_add_ps(acc[j], a);
            step16(a, b, c, e, f);
        }
        _mm512_storeu_ps(wr + m, a);
        _mm512_storeu_ps(wi + m, b);
    }
    float total[U];
    for (int j = 0; j < U; ++j) total[j] = sum16(acc[j]);
    scalar_tail<U>(wr, wi, pc, pe, pf, wide, n_modes, total, scratch);
}

__attribute__((target("avx512f,avx2,fma"))) void run_voice_avx512(float* wr, float* wi, const float* pc,
                                                                  const float* pe, const float* pf, int n_modes,
                                                                  float* scratch, int n) {
    int k = 0;
    for (; k + 4 <= n; k += 4) avx512_pass<4>(wr, wi, pc, pe, pf, n_modes, scratch + k);
    for (; k < n; ++k) avx512_pass<1>(wr, wi, pc, pe, pf, n_modes, scratch + k);
}

using VoiceKernel = void (*)(float*, float*, const float*, const float*, const float*, int, float*, int);

VoiceKernel voice_kernel() {
    return cpu::avx512() ? run_voice_avx512 : cpu::avx2() ? run_voice_avx2 : run_voice_scalar;
}

// ---- element-wise state work: z <- z q (anchor moves), w = c z (block start) --------------------------------

__attribute__((target("avx2"))) void rotate_avx2(float* zr, float* zi, const float* qr, const float* qi, int n) {
    int wide = n - n % 8;
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(zr + m), b = _mm256_loadu_ps(zi + m);
        rotate8(a, b, _mm256_loadu_ps(qr + m), _mm256_loadu_ps(qi + m));
        _mm256_storeu_ps(zr + m, a);
        _mm256_storeu_ps(zi + m, b);
    }
    for (int m = wide; m < n; ++m) {
        float a = zr[m], b = zi[m];
        zr[m] = a * qr[m] - b * qi[m];
        zi[m] = a * qi[m] + b * qr[m];
    }
}

void rotate(float* zr, float* zi, const float* qr, const float* qi, int n) {
    if (cpu::avx2()) return rotate_avx2(zr, zi, qr, qi, n);
    for (int m = 0; m < n; ++m) {
        float a = zr[m], b = zi[m];
        zr[m] = a * qr[m] - b * qi[m];
        zi[m] = a * qi[m] + b * qr[m];
    }
}

__attribute__((target("avx2"))) void phasor_avx2(float* wr, float* wi, const float* zr, const float* zi,
                                                 const float* cr, const float* ci, int n) {
    int wide = n - n % 8;
    for (int m = 0; m < wide; m += 8) {
        __m256 c = _mm256_loadu_ps(cr + m), d = _mm256_loadu_ps(ci + m);
        __m256 a = _mm256_loadu_ps(zr + m), b = _mm256_loadu_ps(zi + m);
        _mm256_storeu_ps(wr + m, _mm256_sub_ps(_mm256_mul_ps(c, a), _mm256_mul_ps(d, b)));
        _mm256_storeu_ps(wi + m, _mm256_add_ps(_mm256_mul_ps(c, b), _mm256_mul_ps(d, a)));
    }
    for (int m = wide; m < n; ++m) {
        wr[m] = cr[m] * zr[m] - ci[m] * zi[m];
        wi[m] = cr[m] * zi[m] + ci[m] * zr[m];
    }
}

// w = c z per mode (block start); at -O2 the compiler does not vectorise the plain loop (measured: 16% of a
// 128-voice block), hence the AVX2 version.
void phasor(float* wr, float* wi, const float* zr, const float* zi, const float* cr, const float* ci, int n) {
    if (cpu::avx2()) return phasor_avx2(wr, wi, zr, zi, cr, ci, n);
    for (int m = 0; m < n; ++m) {
        wr[m] = cr[m] * zr[m] - ci[m] * zi[m];
        wi[m] = cr[m] * zi[m] + ci[m] * zr[m];
    }
}

// The smallest float f with double(f) >= kSilentMode^2: double(z2) < floor2 exactly when z2 < this.
float flush_below() {
    const double floor2 = kSilentMode * kSilentMode;
    float f = float(floor2);
    return double(f) < floor2 ? std::nextafter(f, 1.0f) : f;
}

// Block-end level of modes [0, wide) eight at a time: flush |z|^2 below the floor, sum sqrt(|z|^2 |c|^2) in double.
__attribute__((target("avx2"))) int settle_wide(float* zr, float* zi, const float* cr, const float* ci, int wide,
                                               double& total) {
    const __m256 below = _mm256_set1_ps(flush_below());
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    int last = 0;
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(zr + m), b = _mm256_loadu_ps(zi + m);
        __m256 z2 = _mm256_add_ps(_mm256_mul_ps(a, a), _mm256_mul_ps(b, b));
        __m256 flush = _mm256_cmp_ps(z2, below, _CMP_LT_OQ);   // NaN: not flushed
        _mm256_storeu_ps(zr + m, _mm256_andnot_ps(flush, a));
        _mm256_storeu_ps(zi + m, _mm256_andnot_ps(flush, b));
        __m256 c = _mm256_loadu_ps(cr + m), d = _mm256_loadu_ps(ci + m);
        __m256 c2 = _mm256_add_ps(_mm256_mul_ps(c, c), _mm256_mul_ps(d, d));
        __m256 term = _mm256_andnot_ps(flush, _mm256_sqrt_ps(_mm256_mul_ps(z2, c2)));
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(term)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(term, 1)));
        int kept = ~_mm256_movemask_ps(flush) & 0xFF;
        if (kept) last = m + 32 - __builtin_clz(unsigned(kept));
    }
    double parts[4];
    _mm256_storeu_pd(parts, _mm256_add_pd(sum_lo, sum_hi));
    total = (parts[0] + parts[1]) + (parts[2] + parts[3]);
    return last;
}

// float32 (re, im) of the double pole a + ib, shrunk if rounding made its magnitude exceed 1.
inline void rounded_pole(double a, double b, float& re, float& im) {
    float a32 = float(a), b32 = float(b);
    double mag2 = double(a32) * double(a32) + double(b32) * double(b32);
    float shrink = mag2 > 1.0 ? float((1.0 - 1e-7) / std::sqrt(mag2)) : 1.0f;
    re = a32 * shrink;
    im = b32 * shrink;
}

}  // namespace

void cos_sin(double theta, double& cosine, double& sine) {
    // Taylor polynomials of sin and cos around pi/2 (terms to x^21, x^22), the engine's constants bit for bit.
    static const double S[10] = {-0x1.5555555555555p-3,  0x1.1111111111111p-7,  -0x1.a01a01a01a01ap-13,
                                 0x1.71de3a556c734p-19,  -0x1.ae64567f544e4p-26, 0x1.6124613a86d09p-33,
                                 -0x1.ae7f3e733b81fp-41, 0x1.952c77030ad4ap-49,  -0x1.2f49b46814157p-57,
                                 0x1.71b8ef6dcf572p-66};
    static const double C[11] = {-0x1.0000000000000p-1,  0x1.5555555555555p-5,  -0x1.6c16c16c16c17p-10,
                                 0x1.a01a01a01a01ap-16,  -0x1.27e4fb7789f5cp-22, 0x1.1eed8eff8d898p-29,
                                 -0x1.93974a8c07c9dp-37, 0x1.ae7f3e733b81fp-45,  -0x1.6827863b97d97p-53,
                                 0x1.e542ba4020225p-62,  -0x1.0ce396db7f853p-70};
    double x = theta - 0x1.921fb54442d18p+0;
    double x2 = x * x;
    double ps = S[9];
    for (int k = 8; k >= 0; --k) ps = S[k] + x2 * ps;
    double pc = C[10];
    for (int k = 9; k >= 0; --k) pc = C[k] + x2 * pc;
    double sin_x = x + x * x2 * ps;   // sin and cos of x = theta - pi/2
    double cos_x = 1.0 + x2 * pc;
    cosine = -sin_x;                   // cos(theta) = -sin(x), sin(theta) = cos(x)
    sine = cos_x;
}

ModalBank::ModalBank(int slots_, int modes_, double sample_rate_, int block_size_, bool modulated_, float output_gain_,
                     int attack_samples, double attack_rate)
    : slots(slots_), modes(modes_), sample_rate(sample_rate_), block_size(block_size_), modulated(modulated_),
      output_gain(output_gain_), attack_len(attack_samples) {
    levels = 1;
    while ((1 << levels) <= block_size) ++levels;   // bit_length(block_size): moves up to 2 * block_size - 1
    size_t n = size_t(slots) * size_t(modes);
    for (auto* a : {&zr, &zi, &wr, &wi, &cr, &ci, &sigma, &omega0, &alpha, &beta, &step_e, &step_f}) a->assign(n, 0.0f);
    tilt.assign(n, 1.0f);
    radius.assign(n, 0.0);
    powr.assign(n * size_t(levels), 0.0f);
    powi.assign(n * size_t(levels), 0.0f);
    anchor.assign(size_t(slots), 0);
    live.assign(size_t(slots), 0);
    ended.assign(size_t(slots), 0);
    scale.assign(size_t(slots), 1.0);
    sigma_floor.assign(size_t(slots), 0.0);
    energy.assign(size_t(slots), 0.0);
    level.assign(size_t(slots), 0.0);
    bad.assign(size_t(slots), 0);
    scratch.assign(size_t(block_size), 0.0f);
    theta_.assign(size_t(modes), 0.0);
    radius_work_.assign(size_t(modes), 0.0);
    attack_step = attack_samples ? attack_rate / sample_rate : 0.0;
    attack.assign(attack_samples ? size_t(slots) * size_t(attack_samples + 1) : 0, 0.0f);
    attack_pos.assign(size_t(slots), 0);
    attack_gain.assign(size_t(slots), 1.0);
}

void ModalBank::load(int slot, const float* sigma_row, const float* omega_row, const float* z0_row, const float* c_row,
                     const float* alpha_row, const float* beta_row, const float* attack_row, const float* tilt_row,
                     double bend_scale, int at) {
    float* s = row(sigma, slot);
    float* w = row(omega0, slot);
    float* zrr = row(zr, slot);
    float* zir = row(zi, slot);
    float* crr = row(cr, slot);
    float* cir = row(ci, slot);
    float* t = row(tilt, slot);
    for (int m = 0; m < modes; ++m) {
        s[m] = sigma_row[m];
        w[m] = omega_row[m];
        zrr[m] = z0_row[2 * m];
        zir[m] = z0_row[2 * m + 1];
        t[m] = tilt_row ? tilt_row[m] : 1.0f;
        crr[m] = output_gain * c_row[2 * m] * t[m];
        cir[m] = output_gain * c_row[2 * m + 1] * t[m];
    }
    if (modulated) {
        std::copy(alpha_row, alpha_row + modes, row(alpha, slot));
        std::copy(beta_row, beta_row + modes, row(beta, slot));
    }
    if (attack_len) {
        float* table = attack.data() + size_t(slot) * size_t(attack_len + 1);
        std::copy(attack_row, attack_row + attack_len, table);
        table[attack_len] = 0.0f;
        attack_pos[slot] = 0;
        attack_gain[slot] = 1.0;
    }
    scale[slot] = bend_scale;
    sigma_floor[slot] = 0.0;
    bad[slot] = 0;
    live[slot] = modes;
    int32_t one = slot;
    decay(&one, 1);
    poles(&one, 1, true);
    int n_ended = 0;
    settle_one(slot, 0.0, n_ended);
    start_block(&one, 1);
    anchor[slot] = at;
}

void ModalBank::decay(const int32_t* voices, int count) {
    for (int j = 0; j < count; ++j) {
        int v = voices[j];
        const float* s_row = row(sigma, v);
        double* r = radius.data() + size_t(v) * size_t(modes);
        for (int m = 0; m < modes; ++m)
            r[m] = std::exp(-std::max(std::max(double(s_row[m]) / decay_scale, sigma_floor[v]), 0.0) / sample_rate);
    }
}

void ModalBank::poles(const int32_t* voices, int count, bool new_energy) {
    const double nyquist = M_PI * sample_rate;
    const double fs = sample_rate;
    for (int j = 0; j < count; ++j) {
        int v = voices[j];
        const float* w_row = row(omega0, v);
        const float* a_row = row(alpha, v);
        const float* b_row = row(beta, v);
        const float* zrr = row(zr, v);
        const float* zir = row(zi, v);
        const double* r_row = radius.data() + size_t(v) * size_t(modes);
        double e = energy[v];
        if (modulated && new_energy) {
            e = 0.0;
            for (int m = 0; m < modes; ++m) e += double(b_row[m] * (zrr[m] * zrr[m] + zir[m] * zir[m]));
            energy[v] = e;
        }
        for (int m = 0; m < modes; ++m) {
            double w = scale[v] * double(w_row[m]);
            if (modulated) w = std::sqrt(w * w + double(a_row[m]) * e);
            bool inside = w < nyquist && w >= 0.0;   // modes at or above Nyquist (or omega < 0) get p = 0
            double c, s;
            cos_sin(inside ? w / fs : 0.0, c, s);
            double r = inside ? r_row[m] : 0.0;
            double a = r * c, b = r * s;
            for (int level_ = 0; level_ < levels; ++level_) {
                rounded_pole(a, b, power(powr, level_, v)[m], power(powi, level_, v)[m]);
                double x = a, y = b;
                a = x * x - y * y;
                b = 2.0 * x * y;
            }
            double c32 = power(powr, 0, v)[m], d32 = power(powi, 0, v)[m];   // the float32 per-sample pole
            row(step_e, v)[m] = float(d32 - c32);
            row(step_f, v)[m] = float(c32 + d32);
        }
    }
}

void ModalBank::start_block(const int32_t* active, int count) {
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        anchor[v] = 0;
        phasor(row(wr, v), row(wi, v), row(zr, v), row(zi, v), row(cr, v), row(ci, v), live[v]);
    }
}

void ModalBank::advance(const int32_t* active, int count, float* out, int n) {
    static const VoiceKernel kernel = voice_kernel();
    float* s = scratch.data();
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        kernel(row(wr, v), row(wi, v), power(powr, 0, v), row(step_e, v), row(step_f, v), live[v], s, n);
        if (attack_len > 0 && double(attack_pos[v]) * attack_step < attack_len) {
            const float* table = attack.data() + size_t(v) * size_t(attack_len + 1);
            double step_decay = std::exp(-sigma_floor[v] / sample_rate);
            int64_t position = attack_pos[v];
            double gain = attack_gain[v];
            for (int k = 0; k < n; ++k) {
                double t = double(position) * attack_step;
                if (t >= attack_len) break;
                int64_t i = int64_t(t);
                double f = t - double(i);
                double a = double(table[i]) * (1.0 - f) + double(table[i + 1]) * f;
                s[k] += float(double(output_gain) * gain * a);
                gain *= step_decay;
                ++position;
            }
            attack_pos[v] = position;
            attack_gain[v] = gain;
        }
        bool finite = true;
        for (int k = 0; k < n; ++k)
            if (!std::isfinite(s[k])) finite = false;
        if (finite) {
            for (int k = 0; k < n; ++k) out[k] += s[k];
        } else {
            bad[v] = 1;
        }
    }
}

void ModalBank::move_to(const int32_t* voices, int count, int at) {
    for (int j = 0; j < count; ++j) {
        int v = voices[j];
        int steps = at - anchor[v];
        for (int level_ = 0; steps > 0; ++level_, steps >>= 1)
            if (steps & 1) rotate(row(zr, v), row(zi, v), power(powr, level_, v), power(powi, level_, v), live[v]);
        anchor[v] = at;
    }
}

void ModalBank::release(int slot, double sigma_, int at) {
    int32_t one = slot;
    move_to(&one, 1, at);
    sigma_floor[slot] = std::max(sigma_floor[slot], sigma_);
    decay(&one, 1);
    poles(&one, 1, false);
}

void ModalBank::bend(const int32_t* voices, int count, double bend_scale, int at) {
    move_to(voices, count, at);
    for (int j = 0; j < count; ++j) scale[voices[j]] = bend_scale;
    poles(voices, count, false);
}

int ModalBank::settle_one(int v, double threshold, int& n_ended) {
    const double floor2 = kSilentMode * kSilentMode;
    float* zrr = row(zr, v);
    float* zir = row(zi, v);
    const float* crr = row(cr, v);
    const float* cir = row(ci, v);
    double total = 0.0;
    int last = 0;
    int start = 0;
    if (cpu::avx2()) {
        start = live[v] - live[v] % 8;
        last = settle_wide(zrr, zir, crr, cir, start, total);
    }
    for (int m = start; m < live[v]; ++m) {
        float z2 = zrr[m] * zrr[m] + zir[m] * zir[m];
        if (double(z2) < floor2) {   // NaN compares false: such a mode is kept (its voice is reported via bad)
            zrr[m] = 0.0f;
            zir[m] = 0.0f;
        } else {
            float c2 = crr[m] * crr[m] + cir[m] * cir[m];
            total += double(std::sqrt(z2 * c2));
            last = m + 1;
        }
    }
    live[v] = last;
    level[v] = total;
    bool attack_done = attack_len == 0 || double(attack_pos[v]) * attack_step >= attack_len;
    if (bad[v] || (!(total >= threshold) && attack_done)) ended[n_ended++] = v;
    return n_ended;
}

int ModalBank::settle(const int32_t* active, int count, double threshold) {
    move_to(active, count, block_size);
    int n_ended = 0;
    for (int j = 0; j < count; ++j) settle_one(active[j], threshold, n_ended);
    return n_ended;
}

void ModalBank::set_readout(const int32_t* active, int count, const float* c_rows) {
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        float* crr = row(cr, v);
        float* cir = row(ci, v);
        const float* t = row(tilt, v);
        const float* c = c_rows + size_t(j) * size_t(modes) * 2;
        for (int m = 0; m < modes; ++m) {
            crr[m] = output_gain * c[2 * m] * t[m];
            cir[m] = output_gain * c[2 * m + 1] * t[m];
        }
    }
}

void limit(float* x, int n, double& gain_state, double ceiling, double release_coef) {
    double g = gain_state;
    for (int k = 0; k < n; ++k) {
        double a = std::fabs(double(x[k]));
        if (a * g > ceiling) {
            g = ceiling / a;
        } else if (g < 1.0) {
            g = g + (1.0 - g) * release_coef;
            if (a * g > ceiling) g = ceiling / a;
        }
        x[k] = float(double(x[k]) * g);
    }
    gain_state = g;
}

void brightness_tilt(const float* omega0, int modes, double note, double brightness, float* out) {
    double omega_note = 2.0 * M_PI * (440.0 * std::pow(2.0, (note - 69.0) / 12.0));
    for (int m = 0; m < modes; ++m) {
        double factor = std::pow(double(omega0[m]) / omega_note, brightness);
        if (std::isnan(factor)) factor = 1.0;
        out[m] = float(std::clamp(factor, 1.0 / 16.0, 16.0));
    }
}

}  // namespace eigentone
