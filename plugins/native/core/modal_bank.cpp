#include "modal_bank.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ort_math.hpp"

namespace eigentone {
namespace {

// The two complex-multiply halves as numba fuses them on an FMA CPU: a*b - c*d with c*d rounded first, and
// a*b + c*d with a*b rounded first (the engine's kernels were matched element for element).
template <bool F>
__attribute__((always_inline)) inline float fms(float a, float b, float c, float d) {
    if constexpr (F) return __builtin_fmaf(a, b, -(c * d));
    return a * b - c * d;
}

template <bool F>
__attribute__((always_inline)) inline float fps(float a, float b, float c, float d) {
    if constexpr (F) return __builtin_fmaf(c, d, a * b);
    return a * b + c * d;
}

template <bool F>
__attribute__((always_inline)) inline float norm2(float re, float im) {
    if constexpr (F) return __builtin_fmaf(im, im, re * re);
    return re * re + im * im;
}

// The per-sample recurrence of one voice: scratch[k] = sum_m Re(w_m), w <- p w (the engine's 4-sample
// loop fuses the imaginary part as a*d + (b*c rounded); used for every sample here, whatever the cut).
template <bool F>
__attribute__((always_inline)) inline void run_voice(float* wr, float* wi, const float* pr, const float* pi,
                                                     int n_modes, float* scratch, int n) {
    for (int k = 0; k < n; ++k) {
        float acc = 0.0f;
        for (int m = 0; m < n_modes; ++m) {
            float a = wr[m], b = wi[m];
            acc += a;
            wr[m] = fms<F>(a, pr[m], b, pi[m]);
            wi[m] = fps<F>(b, pr[m], a, pi[m]);
        }
        scratch[k] = acc;
    }
}

// The same recurrence eight modes at a time (AVX2), four samples per pass over the modes (as the engine's
// kernel does): each mode's arithmetic is the scalar one, only the output sum over modes is added in another
// order (the engine's vectorised sum differs from both anyway).
__attribute__((target("avx2,fma"))) inline __m256 rotate8(__m256& a, __m256& b, __m256 c, __m256 d) {
    __m256 re = _mm256_fmadd_ps(a, c, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(b, d)));
    b = _mm256_fmadd_ps(a, d, _mm256_mul_ps(b, c));
    a = re;
    return a;
}

__attribute__((target("avx2,fma"))) inline float sum8(__m256 v) {
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    half = _mm_add_ss(half, _mm_movehdup_ps(half));
    return _mm_cvtss_f32(half);
}

__attribute__((target("avx2,fma"))) void run_voice_fma(float* wr, float* wi, const float* pr, const float* pi,
                                                       int n_modes, float* scratch, int n) {
    int wide = n_modes - n_modes % 8;
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        for (int m = 0; m < wide; m += 8) {
            __m256 a = _mm256_loadu_ps(wr + m), b = _mm256_loadu_ps(wi + m);
            __m256 c = _mm256_loadu_ps(pr + m), d = _mm256_loadu_ps(pi + m);
            acc0 = _mm256_add_ps(acc0, a);
            acc1 = _mm256_add_ps(acc1, rotate8(a, b, c, d));
            acc2 = _mm256_add_ps(acc2, rotate8(a, b, c, d));
            acc3 = _mm256_add_ps(acc3, rotate8(a, b, c, d));
            rotate8(a, b, c, d);
            _mm256_storeu_ps(wr + m, a);
            _mm256_storeu_ps(wi + m, b);
        }
        float total[4] = {sum8(acc0), sum8(acc1), sum8(acc2), sum8(acc3)};
        for (int m = wide; m < n_modes; ++m) {
            float a = wr[m], b = wi[m];
            for (int j = 0; j < 4; ++j) {
                total[j] += a;
                float re = __builtin_fmaf(a, pr[m], -(b * pi[m]));
                b = __builtin_fmaf(a, pi[m], b * pr[m]);
                a = re;
            }
            wr[m] = a;
            wi[m] = b;
        }
        for (int j = 0; j < 4; ++j) scratch[k + j] = total[j];
    }
    for (; k < n; ++k) {
        __m256 acc = _mm256_setzero_ps();
        for (int m = 0; m < wide; m += 8) {
            __m256 a = _mm256_loadu_ps(wr + m), b = _mm256_loadu_ps(wi + m);
            acc = _mm256_add_ps(acc, a);
            rotate8(a, b, _mm256_loadu_ps(pr + m), _mm256_loadu_ps(pi + m));
            _mm256_storeu_ps(wr + m, a);
            _mm256_storeu_ps(wi + m, b);
        }
        float total = sum8(acc);
        for (int m = wide; m < n_modes; ++m) {
            float a = wr[m], b = wi[m];
            total += a;
            wr[m] = __builtin_fmaf(a, pr[m], -(b * pi[m]));
            wi[m] = __builtin_fmaf(a, pi[m], b * pr[m]);
        }
        scratch[k] = total;
    }
}

// Sixteen modes at a time where the CPU has AVX-512 (same per-mode arithmetic).
__attribute__((target("avx512f,fma"))) inline void rotate16(__m512& a, __m512& b, __m512 c, __m512 d) {
    __m512 re = _mm512_fmadd_ps(a, c, _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(b, d)));
    b = _mm512_fmadd_ps(a, d, _mm512_mul_ps(b, c));
    a = re;
}

// A sample's sum over modes: the 16-lane partial sums reduced in a fixed order, then the leftover modes. The
// same order for every sample, however the block is cut, so the output is identical for any host buffer size.
__attribute__((target("avx512f,avx2,fma"))) inline float sum16(__m512 v) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, v);
    return sum8(_mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8)));
}

template <int U>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void avx512_pass(float* wr, float* wi, const float* pr,
                                                                                   const float* pi, int n_modes,
                                                                                   float* scratch) {
    int wide = n_modes - n_modes % 16;
    __m512 acc[U];
    for (int j = 0; j < U; ++j) acc[j] = _mm512_setzero_ps();
    for (int m = 0; m < wide; m += 16) {
        __m512 a = _mm512_loadu_ps(wr + m), b = _mm512_loadu_ps(wi + m);
        __m512 c = _mm512_loadu_ps(pr + m), d = _mm512_loadu_ps(pi + m);
        for (int j = 0; j < U; ++j) {
            acc[j] = _mm512_add_ps(acc[j], a);
            rotate16(a, b, c, d);
        }
        _mm512_storeu_ps(wr + m, a);
        _mm512_storeu_ps(wi + m, b);
    }
    float total[U];
    for (int j = 0; j < U; ++j) total[j] = sum16(acc[j]);
    for (int m = wide; m < n_modes; ++m) {
        float a = wr[m], b = wi[m];
        for (int j = 0; j < U; ++j) {
            total[j] += a;
            float re = __builtin_fmaf(a, pr[m], -(b * pi[m]));
            b = __builtin_fmaf(a, pi[m], b * pr[m]);
            a = re;
        }
        wr[m] = a;
        wi[m] = b;
    }
    for (int j = 0; j < U; ++j) scratch[j] = total[j];
}

__attribute__((target("avx512f,avx2,fma"))) void run_voice_avx512(float* wr, float* wi, const float* pr,
                                                                 const float* pi, int n_modes, float* scratch, int n) {
    int k = 0;
    for (; k + 4 <= n; k += 4) avx512_pass<4>(wr, wi, pr, pi, n_modes, scratch + k);
    for (; k < n; ++k) avx512_pass<1>(wr, wi, pr, pi, n_modes, scratch + k);
}

bool has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    return avx512;
#else
    return false;
#endif
}

bool has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return avx2;
#else
    return false;
#endif
}

__attribute__((target("fma"))) void run_voice_fma_scalar(float* wr, float* wi, const float* pr, const float* pi,
                                                         int m, float* s, int n) {
    run_voice<true>(wr, wi, pr, pi, m, s, n);
}
void run_voice_plain(float* wr, float* wi, const float* pr, const float* pi, int m, float* s, int n) {
    run_voice<false>(wr, wi, pr, pi, m, s, n);
}

template <bool F>
__attribute__((always_inline)) inline void rotate(float* zr, float* zi, const float* qr, const float* qi, int n) {
    for (int m = 0; m < n; ++m) {
        float a = zr[m], b = zi[m];
        zr[m] = fms<F>(a, qr[m], b, qi[m]);
        zi[m] = fps<F>(a, qi[m], b, qr[m]);
    }
}
__attribute__((target("avx2,fma"))) void rotate_fma(float* zr, float* zi, const float* qr, const float* qi, int n) {
    int wide = n - n % 8;
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(zr + m), b = _mm256_loadu_ps(zi + m);
        __m256 c = _mm256_loadu_ps(qr + m), d = _mm256_loadu_ps(qi + m);
        _mm256_storeu_ps(zr + m, _mm256_fmadd_ps(a, c, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(b, d))));
        _mm256_storeu_ps(zi + m, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, d)));
    }
    rotate<true>(zr + wide, zi + wide, qr + wide, qi + wide, n - wide);
}
void rotate_plain(float* zr, float* zi, const float* qr, const float* qi, int n) { rotate<false>(zr, zi, qr, qi, n); }

template <bool F>
__attribute__((always_inline)) inline void phasor(float* wr, float* wi, const float* zr, const float* zi,
                                                  const float* cr, const float* ci, int n) {
    for (int m = 0; m < n; ++m) {
        wr[m] = fms<F>(cr[m], zr[m], ci[m], zi[m]);
        wi[m] = fps<F>(cr[m], zi[m], ci[m], zr[m]);
    }
}
__attribute__((target("avx2,fma"))) void phasor_fma(float* wr, float* wi, const float* zr, const float* zi,
                                                    const float* cr, const float* ci, int n) {
    int wide = n - n % 8;
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(cr + m), b = _mm256_loadu_ps(zr + m);
        __m256 c = _mm256_loadu_ps(ci + m), d = _mm256_loadu_ps(zi + m);
        _mm256_storeu_ps(wr + m, _mm256_fmadd_ps(a, b, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(c, d))));
        _mm256_storeu_ps(wi + m, _mm256_fmadd_ps(c, b, _mm256_mul_ps(a, d)));
    }
    phasor<true>(wr + wide, wi + wide, zr + wide, zi + wide, cr + wide, ci + wide, n - wide);
}
void phasor_plain(float* wr, float* wi, const float* zr, const float* zi, const float* cr, const float* ci, int n) {
    phasor<false>(wr, wi, zr, zi, cr, ci, n);
}

__attribute__((target("fma"))) float norm2_fma(float re, float im) { return norm2<true>(re, im); }
float norm2_plain(float re, float im) { return norm2<false>(re, im); }
__attribute__((target("fma"))) double dfma(double a, double b, double c) { return __builtin_fma(a, b, c); }

// float32 (re, im) of the double pole a + ib, shrunk if rounding made its magnitude exceed 1.
inline void rounded_pole(double a, double b, float& re, float& im) {
    float a32 = float(a), b32 = float(b);
    double mag2 = double(a32) * double(a32) + double(b32) * double(b32);
    if (mag2 > 1.0) {
        float shrink = float((1.0 - 1e-7) / std::sqrt(mag2));
        a32 *= shrink;
        b32 *= shrink;
    }
    re = a32;
    im = b32;
}

}  // namespace

ModalBank::ModalBank(int slots_, int modes_, double sample_rate_, int block_size_, bool modulated_, float output_gain_,
                     int attack_samples, double attack_rate)
    : slots(slots_), modes(modes_), sample_rate(sample_rate_), block_size(block_size_), modulated(modulated_),
      output_gain(output_gain_), attack_len(attack_samples), fma_(ortm::has_fma()) {
    levels = 1;
    while ((1 << levels) <= block_size) ++levels;   // bit_length(block_size): moves up to 2 * block_size - 1
    size_t n = size_t(slots) * size_t(modes);
    for (auto* a : {&zr, &zi, &wr, &wi, &cr, &ci, &sigma, &omega0, &alpha, &beta}) a->assign(n, 0.0f);
    tilt.assign(n, 1.0f);
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
    poles(&one, 1, true);
    int n_ended = 0;
    settle_one(slot, 0.0, n_ended);
    start_block(&one, 1);
    anchor[slot] = at;
}

void ModalBank::poles(const int32_t* voices, int count, bool new_energy) {
    const double nyquist = M_PI * sample_rate;
    const double fs = sample_rate;
    for (int j = 0; j < count; ++j) {
        int v = voices[j];
        const float* s_row = row(sigma, v);
        const float* w_row = row(omega0, v);
        const float* a_row = row(alpha, v);
        const float* b_row = row(beta, v);
        const float* zrr = row(zr, v);
        const float* zir = row(zi, v);
        double e = energy[v];
        if (modulated && new_energy) {
            e = 0.0;
            for (int m = 0; m < modes; ++m)
                e += double(b_row[m] * (fma_ ? norm2_fma(zrr[m], zir[m]) : norm2_plain(zrr[m], zir[m])));
            energy[v] = e;
        }
        for (int m = 0; m < modes; ++m) {
            double w = scale[v] * double(w_row[m]);
            if (modulated) w = std::sqrt(w * w + double(a_row[m]) * e);
            if (w >= nyquist || w < 0.0) {
                for (int level_ = 0; level_ < levels; ++level_) power(powr, level_, v)[m] = power(powi, level_, v)[m] = 0.0f;
                continue;
            }
            double s = std::max(std::max(double(s_row[m]) / decay_scale, sigma_floor[v]), 0.0);
            double r = std::exp(-s / fs);
            double a = r * std::cos(w / fs);
            double b = r * std::sin(w / fs);
            for (int level_ = 0; level_ < levels; ++level_) {
                rounded_pole(a, b, power(powr, level_, v)[m], power(powi, level_, v)[m]);
                double a2 = fma_ ? dfma(a, a, -(b * b)) : a * a - b * b;
                b = 2.0 * a * b;
                a = a2;
            }
        }
    }
}

void ModalBank::start_block(const int32_t* active, int count) {
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        anchor[v] = 0;
        (fma_ ? phasor_fma : phasor_plain)(row(wr, v), row(wi, v), row(zr, v), row(zi, v), row(cr, v), row(ci, v), live[v]);
    }
}

void ModalBank::advance(const int32_t* active, int count, float* out, int n) {
    float* s = scratch.data();
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        (!fma_ ? run_voice_plain : has_avx512() ? run_voice_avx512 : has_avx2() ? run_voice_fma : run_voice_fma_scalar)(
            row(wr, v), row(wi, v), power(powr, 0, v), power(powi, 0, v), live[v], s, n);
        if (attack_len > 0 && double(attack_pos[v]) * attack_step < attack_len) {
            const float* table = attack.data() + size_t(v) * size_t(attack_len + 1);
            double decay = std::exp(-sigma_floor[v] / sample_rate);
            int64_t position = attack_pos[v];
            double gain = attack_gain[v];
            for (int k = 0; k < n; ++k) {
                double t = double(position) * attack_step;
                if (t >= attack_len) break;
                int64_t i = int64_t(t);
                double f = t - double(i);
                double a = double(table[i]) * (1.0 - f) + double(table[i + 1]) * f;
                s[k] += float(double(output_gain) * gain * a);
                gain *= decay;
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
        for (int level_ = 0; steps > 0; ++level_, steps >>= 1) {
            if (steps & 1)
                (fma_ ? rotate_fma : rotate_plain)(row(zr, v), row(zi, v), power(powr, level_, v), power(powi, level_, v),
                                                   live[v]);
        }
        anchor[v] = at;
    }
}

void ModalBank::release(int slot, double sigma_, int at) {
    int32_t one = slot;
    move_to(&one, 1, at);
    sigma_floor[slot] = std::max(sigma_floor[slot], sigma_);
    poles(&one, 1, false);
}

void ModalBank::bend(const int32_t* voices, int count, double bend_scale, int at) {
    move_to(voices, count, at);
    for (int j = 0; j < count; ++j) scale[voices[j]] = bend_scale;
    poles(voices, count, false);
}

namespace {

// The smallest float f with double(f) >= kSilentMode^2: double(z2) < floor2 exactly when z2 < this.
float flush_below() {
    const double floor2 = kSilentMode * kSilentMode;
    float f = float(floor2);
    return double(f) < floor2 ? std::nextafter(f, 1.0f) : f;
}

// Eight modes at a time: |z|^2 and |c|^2 as the scalar code fuses them, flush, sqrt(|z|^2 |c|^2) summed in double.
__attribute__((target("avx2,fma"))) int settle_wide(float* zr, float* zi, const float* cr, const float* ci, int wide,
                                                    double& total) {
    const __m256 below = _mm256_set1_ps(flush_below());
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    int last = 0;
    for (int m = 0; m < wide; m += 8) {
        __m256 a = _mm256_loadu_ps(zr + m), b = _mm256_loadu_ps(zi + m);
        __m256 z2 = _mm256_fmadd_ps(b, b, _mm256_mul_ps(a, a));
        __m256 flush = _mm256_cmp_ps(z2, below, _CMP_LT_OQ);   // NaN: not flushed
        _mm256_storeu_ps(zr + m, _mm256_andnot_ps(flush, a));
        _mm256_storeu_ps(zi + m, _mm256_andnot_ps(flush, b));
        __m256 c = _mm256_loadu_ps(cr + m), d = _mm256_loadu_ps(ci + m);
        __m256 c2 = _mm256_fmadd_ps(d, d, _mm256_mul_ps(c, c));
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

}  // namespace

int ModalBank::settle_one(int v, double threshold, int& n_ended) {
    const double floor2 = kSilentMode * kSilentMode;
    float* zrr = row(zr, v);
    float* zir = row(zi, v);
    const float* crr = row(cr, v);
    const float* cir = row(ci, v);
    double total = 0.0;
    int last = 0;
    int start = 0;
    if (fma_ && has_avx2()) {
        start = live[v] - live[v] % 8;
        last = settle_wide(zrr, zir, crr, cir, start, total);
    }
    for (int m = start; m < live[v]; ++m) {
        float z2 = fma_ ? norm2_fma(zrr[m], zir[m]) : norm2_plain(zrr[m], zir[m]);
        if (double(z2) < floor2) {   // NaN compares false: such a mode is kept (its voice is reported via bad)
            zrr[m] = 0.0f;
            zir[m] = 0.0f;
        } else {
            float c2 = fma_ ? norm2_fma(crr[m], cir[m]) : norm2_plain(crr[m], cir[m]);
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
