// The modal bank of one instrument: every voice slot's complex one-pole modes, mirroring engine/modal_bank.py
// operation for operation (docs/engine-semantics.md, "numerical scheme") in plain IEEE arithmetic (no fused
// multiply-adds but the two of the per-sample step, as in the engine), so the native core renders what the engine
// renders.
//
//   state z (at the voice's anchor sample), output phasor w, per-sample pole p, readout c (float32):
//   block start:   w = c z, anchor = 0
//   every sample:  y += sum_m Re(w_m), then w <- p w as k = c (Re w + Im w), Re w <- fma(-Im w, c + d, k),
//                  Im w <- fma(Re w, d - c, k) for p = c + id (the engine's rotated; d - c, c + d stored float32)
//   anchor moves:  z <- z p^(k - anchor) by the binary powers p^(2^i) (formed in double, stored float32),
//                  before a voice's poles change inside a block (release, bend) and at the block end
//   p = r (cos theta + i sin theta), r = exp(-max(sigma / decay_scale, sigma_floor, 0) / fs) (after note-on and
//   release), theta = omega / fs with omega = scale omega0 or, with pole modulation, sqrt((scale omega0)^2 +
//   alpha E), E = sum_m beta_m |z_m|^2 at the block start; cos/sin are the engine's float64 polynomials.
// So the samples do not depend on where a block is cut into calls. All arrays (slots x modes) are allocated once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace eigentone {

constexpr double kSilentMode = 1e-12;   // |z| below which a mode is flushed to 0 at a block end

// Allocator of 64-byte aligned storage (one cache line, one AVX-512 register): with rows whose length is a multiple
// of 16 floats, the kernels' vector loads never straddle two cache lines (as in the engine, engine/buffers.py).
template <class T>
struct CacheAligned {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};
    CacheAligned() = default;
    template <class U>
    CacheAligned(const CacheAligned<U>&) {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, std::size_t) { ::operator delete(p, kAlign); }
    template <class U>
    bool operator==(const CacheAligned<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheAligned<U>&) const { return false; }
};
using Floats = std::vector<float, CacheAligned<float>>;

class ModalBank {
public:
    ModalBank(int slots, int modes, double sample_rate, int block_size, bool modulated, float output_gain,
              int attack_samples, double attack_rate);

    int slots, modes, levels;
    double sample_rate;
    int block_size;
    bool modulated;
    float output_gain;
    double decay_scale = 1.0;

    // (slots x modes) float32, row-major per slot; pow: (levels x slots x modes).
    // step_e, step_f: d - c and c + d of the per-sample pole p = c + id (c is powr at level 0).
    Floats zr, zi, wr, wi, cr, ci, sigma, omega0, alpha, beta, tilt, powr, powi, step_e, step_f;
    std::vector<int32_t> anchor, live, ended;
    std::vector<double> scale, sigma_floor, energy, level;   // per slot
    std::vector<double> radius;                               // (slots x modes) pole radius r
    std::vector<uint8_t> bad;
    Floats scratch;
    // attack component: tables (slots x (attack_len + 1), last entry 0), samples played, release envelope
    int attack_len;
    double attack_step;
    std::vector<float> attack;
    std::vector<int64_t> attack_pos;
    std::vector<double> attack_gain;

    float* row(Floats& a, int slot) { return a.data() + size_t(slot) * size_t(modes); }
    float* power(Floats& a, int level, int slot) {
        return a.data() + (size_t(level) * size_t(slots) + size_t(slot)) * size_t(modes);
    }

    // Start `slot` at sample `at` of the current block from one excite row; tilt (modes,) or null.
    void load(int slot, const float* sigma_row, const float* omega_row, const float* z0_row, const float* c_row,
              const float* alpha_row, const float* beta_row, const float* attack_row, const float* tilt_row,
              double bend_scale, int at);
    // Pole radii of slots voices[0..count) (after a note-on or a release; then poles()).
    void decay(const int32_t* voices, int count);
    // Pole powers of slots voices[0..count); new_energy: re-evaluate E from the current state first.
    void poles(const int32_t* voices, int count, bool new_energy);
    void start_block(const int32_t* active, int count);
    // Add the next n samples of voices active[0..count) to out[0..n).
    void advance(const int32_t* active, int count, float* out, int n);
    void move_to(const int32_t* voices, int count, int at);
    void release(int slot, double sigma, int at);
    void bend(const int32_t* voices, int count, double bend_scale, int at);
    // Block end: state to the block end, levels, flush near-zero modes, list bad/ended slots; returns how many.
    int settle(const int32_t* active, int count, double threshold);
    // Readout weights from a readout graph's output rows (count, modes, 2): output_gain * c * tilt.
    void set_readout(const int32_t* active, int count, const float* c_rows);

private:
    int settle_one(int v, double threshold, int& n_ended);
    std::vector<double> theta_, radius_work_;   // (modes,) scratch of poles()
};

// Peak limiter in place on x[0..n): instant attack to keep |y| <= ceiling, exponential release per sample.
void limit(float* x, int n, double& gain_state, double ceiling, double release_coef);

// (cos x, sin x) for x in [0, pi] as engine/modal_bank.py cos_sin computes them (float64 polynomials).
void cos_sin(double x, double& cosine, double& sine);

// Brightness factors clamp((omega0 / omega_note)^b, 1/16, 16), omega_note = 2 pi midi_to_hz(note), as float32.
void brightness_tilt(const float* omega0, int modes, double note, double brightness, float* out);

}  // namespace eigentone
