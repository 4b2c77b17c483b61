#include "modal_bank.hpp"

#include <cmath>

#include "ort_math.hpp"

namespace eigentone {
namespace {

template <bool F>
__attribute__((always_inline)) inline float fms(float a, float b, float c, float d) {   // a*b - c*d
    if constexpr (F) {
        return __builtin_fmaf(a, b, -(c * d));
    } else {
        return a * b - c * d;
    }
}

template <bool F>
__attribute__((always_inline)) inline float fps(float a, float b, float c, float d) {   // a*b + c*d, c*d fused
    if constexpr (F) {
        return __builtin_fmaf(c, d, a * b);
    } else {
        return a * b + c * d;
    }
}

template <bool F>
__attribute__((always_inline)) inline void advance_impl(ModalBank& b, const int32_t* active, int count, float* out,
                                                        int start, int stop) {
    const int modes = b.modes;
    float* scratch = b.scratch.data();
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        int n_modes = b.live[v];
        float* zr = b.row(b.zr, v);
        float* zi = b.row(b.zi, v);
        const float* pr = b.row(b.pr, v);
        const float* pi = b.row(b.pi, v);
        const float* cr = b.row(b.cr, v);
        const float* ci = b.row(b.ci, v);
        (void)modes;
        for (int k = start; k < stop; ++k) {
            float acc = 0.0f;
            for (int m = 0; m < n_modes; ++m) {
                float a = zr[m], c = zi[m];
                acc += fps<F>(cr[m], a, -ci[m], c);
                zr[m] = fms<F>(a, pr[m], c, pi[m]);
                zi[m] = fps<F>(a, pi[m], c, pr[m]);
            }
            scratch[k] = acc;
        }
        bool finite = true;
        for (int k = start; k < stop; ++k)
            if (!std::isfinite(scratch[k])) finite = false;
        if (finite) {
            for (int k = start; k < stop; ++k) out[k] += scratch[k];
        } else {
            b.bad[v] = 1;
        }
    }
}

template <bool F>
__attribute__((always_inline)) inline void advance_block_impl(ModalBank& b, const int32_t* active, int count,
                                                              float* out, int n) {
    float* scratch = b.scratch.data();
    float* wr = b.wr.data();
    float* wi = b.wi.data();
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        int n_modes = b.live[v];
        float* zr = b.row(b.zr, v);
        float* zi = b.row(b.zi, v);
        const float* pr = b.row(b.pr, v);
        const float* pi = b.row(b.pi, v);
        const float* cr = b.row(b.cr, v);
        const float* ci = b.row(b.ci, v);
        for (int m = 0; m < n_modes; ++m) {
            wr[m] = fms<F>(cr[m], zr[m], ci[m], zi[m]);
            wi[m] = fps<F>(cr[m], zi[m], ci[m], zr[m]);
        }
        for (int k = 0; k < n; ++k) {
            float acc = 0.0f;
            for (int m = 0; m < n_modes; ++m) {
                float a = wr[m], c = wi[m];
                acc += a;
                wr[m] = fms<F>(a, pr[m], c, pi[m]);
                wi[m] = fps<F>(a, pi[m], c, pr[m]);
            }
            scratch[k] = acc;
        }
        const float* qr = b.row(b.qr, v);
        const float* qi = b.row(b.qi, v);
        for (int m = 0; m < n_modes; ++m) {
            float a = zr[m], c = zi[m];
            zr[m] = fms<F>(a, qr[m], c, qi[m]);
            zi[m] = fps<F>(a, qi[m], c, qr[m]);
        }
        bool finite = true;
        for (int k = 0; k < n; ++k)
            if (!std::isfinite(scratch[k])) finite = false;
        if (finite) {
            for (int k = 0; k < n; ++k) out[k] += scratch[k];
        } else {
            b.bad[v] = 1;
        }
    }
}

__attribute__((target("fma"))) void advance_fma(ModalBank& b, const int32_t* a, int n, float* out, int s, int e) {
    advance_impl<true>(b, a, n, out, s, e);
}
void advance_plain(ModalBank& b, const int32_t* a, int n, float* out, int s, int e) {
    advance_impl<false>(b, a, n, out, s, e);
}
__attribute__((target("fma"))) void block_fma(ModalBank& b, const int32_t* a, int n, float* out, int len) {
    advance_block_impl<true>(b, a, n, out, len);
}
void block_plain(ModalBank& b, const int32_t* a, int n, float* out, int len) {
    advance_block_impl<false>(b, a, n, out, len);
}

// float32 (re, im) of r exp(i angle), shrunk if rounding made its magnitude exceed 1.
inline void rounded_pole(double r, double angle, float& re, float& im) {
    float a = float(r * std::cos(angle));
    float b = float(r * std::sin(angle));
    double mag2 = double(a) * double(a) + double(b) * double(b);
    if (mag2 > 1.0) {
        float shrink = float((1.0 - 1e-7) / std::sqrt(mag2));
        a *= shrink;
        b *= shrink;
    }
    re = a;
    im = b;
}

template <bool F>
__attribute__((always_inline)) inline float norm2(float re, float im) {   // re*re + im*im as numba fuses it
    if constexpr (F) {
        return __builtin_fmaf(im, im, re * re);
    } else {
        return re * re + im * im;
    }
}

__attribute__((target("fma"))) float norm2_fma(float re, float im) { return norm2<true>(re, im); }
float norm2_plain(float re, float im) { return norm2<false>(re, im); }

}  // namespace

ModalBank::ModalBank(int slots_, int modes_, double sample_rate_, int block_size_, bool modulated_, float output_gain_)
    : slots(slots_), modes(modes_), sample_rate(sample_rate_), block_size(block_size_), modulated(modulated_),
      output_gain(output_gain_), fma_(ortm::has_fma()) {
    size_t n = size_t(slots) * size_t(modes);
    for (auto* a : {&zr, &zi, &pr, &pi, &qr, &qi, &cr, &ci, &sigma, &omega0, &alpha, &beta, &tilt}) a->assign(n, 0.0f);
    scale.assign(size_t(slots), 1.0);
    sigma_floor.assign(size_t(slots), 0.0);
    energy.assign(size_t(slots), 0.0);
    level.assign(size_t(slots), 0.0);
    live.assign(size_t(slots), 0);
    bad.assign(size_t(slots), 0);
    ended.assign(size_t(slots), 0);
    scratch.assign(size_t(block_size), 0.0f);
    wr.assign(size_t(modes), 0.0f);
    wi.assign(size_t(modes), 0.0f);
}

void ModalBank::load(int slot, const float* sigma_row, const float* omega_row, const float* z0_row, const float* c_row,
                     const float* alpha_row, const float* beta_row, const float* tilt_row, double bend_scale) {
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
        crr[m] = output_gain * c_row[2 * m];
        cir[m] = output_gain * c_row[2 * m + 1];
        if (tilt_row) {
            crr[m] *= t[m];
            cir[m] *= t[m];
        }
    }
    if (modulated) {
        float* a = row(alpha, slot);
        float* b = row(beta, slot);
        for (int m = 0; m < modes; ++m) {
            a[m] = alpha_row[m];
            b[m] = beta_row[m];
        }
    }
    scale[slot] = bend_scale;
    sigma_floor[slot] = 0.0;
    bad[slot] = 0;
    int32_t one = slot;
    poles(&one, 1, true);
    live[slot] = modes;
    settle(&one, 1, 0.0);
}

void ModalBank::poles(const int32_t* voices, int count, bool new_energy) {
    const double nyquist = M_PI * sample_rate;
    const double fs = sample_rate;
    const double block = double(block_size);
    for (int j = 0; j < count; ++j) {
        int v = voices[j];
        const float* s_row = row(sigma, v);
        const float* w_row = row(omega0, v);
        const float* a_row = row(alpha, v);
        const float* b_row = row(beta, v);
        const float* zrr = row(zr, v);
        const float* zir = row(zi, v);
        float* prr = row(pr, v);
        float* pir = row(pi, v);
        float* qrr = row(qr, v);
        float* qir = row(qi, v);
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
                prr[m] = pir[m] = qrr[m] = qir[m] = 0.0f;
                continue;
            }
            double s = double(s_row[m]);
            if (decay_scale != 1.0) s = s / decay_scale;
            s = std::max(std::max(s, sigma_floor[v]), 0.0);
            rounded_pole(std::exp(-s / fs), w / fs, prr[m], pir[m]);
            rounded_pole(std::exp(-s * block / fs), w * block / fs, qrr[m], qir[m]);
        }
    }
}

void ModalBank::pole_of(int slot) {
    int32_t one = slot;
    poles(&one, 1, false);
}

void ModalBank::advance(const int32_t* active, int count, float* out, int start, int stop) {
    if (start == 0 && stop == block_size) {
        fma_ ? block_fma(*this, active, count, out, stop) : block_plain(*this, active, count, out, stop);
    } else {
        fma_ ? advance_fma(*this, active, count, out, start, stop) : advance_plain(*this, active, count, out, start, stop);
    }
}

int ModalBank::settle(const int32_t* active, int count, double threshold) {
    const double floor2 = kSilentMode * kSilentMode;
    int n_ended = 0;
    for (int j = 0; j < count; ++j) {
        int v = active[j];
        float* zrr = row(zr, v);
        float* zir = row(zi, v);
        const float* crr = row(cr, v);
        const float* cir = row(ci, v);
        double total = 0.0;
        int last = 0;
        for (int m = 0; m < live[v]; ++m) {
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
        if (bad[v] || !(total >= threshold)) ended[n_ended++] = v;
    }
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
            crr[m] = output_gain * c[2 * m];
            cir[m] = output_gain * c[2 * m + 1];
            if (t[m] != 1.0f) {
                crr[m] *= t[m];
                cir[m] *= t[m];
            }
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

}  // namespace eigentone
