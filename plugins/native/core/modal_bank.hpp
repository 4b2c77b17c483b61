// The modal bank of one instrument: every voice slot's complex one-pole modes, float32 state, mirroring
// engine/modal_bank.py operation for operation (the same kernels, the same update order, the same fused
// multiply-adds that numba emits on a CPU with FMA), so the native core renders what the Python engine does.
//
//   z[k+1] = p z[k],  p = exp((-max(sigma / decay_scale, sigma_floor, 0) + i omega) / fs)
//   y[k]   = sum_m Re(c_m z_m[k])
//   omega  = scale * omega0, or sqrt((scale * omega0)^2 + alpha * E) with E = sum_m beta_m |z_m|^2 (pole modulation)
//
// A whole block (start 0, stop block) takes the fast path: iterate w = c z and jump the state by q = p^block;
// a block split by events takes the per-sample path. All arrays are (slots, modes), allocated once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace eigentone {

constexpr double kSilentMode = 1e-12;   // |z| below which a mode is flushed to 0 at a block end

class ModalBank {
public:
    ModalBank(int slots, int modes, double sample_rate, int block_size, bool modulated, float output_gain);

    int slots, modes;
    double sample_rate;
    int block_size;
    bool modulated;
    float output_gain;
    double decay_scale = 1.0;

    // (slots * modes) float32, row-major per slot.
    std::vector<float> zr, zi, pr, pi, qr, qi, cr, ci, sigma, omega0, alpha, beta, tilt;
    std::vector<double> scale, sigma_floor, energy, level;   // per slot
    std::vector<int32_t> live;
    std::vector<uint8_t> bad;
    std::vector<int32_t> ended;
    std::vector<float> scratch, wr, wi;

    float* row(std::vector<float>& a, int slot) { return a.data() + size_t(slot) * size_t(modes); }

    // Start `slot` from one excite row (sigma, omega, z0, c[, alpha, beta]); tilt (modes,) or null for none.
    void load(int slot, const float* sigma_row, const float* omega_row, const float* z0_row, const float* c_row,
              const float* alpha_row, const float* beta_row, const float* tilt_row, double bend_scale);
    // Recompute p and q of slots voices[0..count); new_energy: re-evaluate E from the current state first.
    void poles(const int32_t* voices, int count, bool new_energy);
    void pole_of(int slot);
    // Add samples [start, stop) of voices active[0..count) to out and advance them.
    void advance(const int32_t* active, int count, float* out, int start, int stop);
    // Block end: levels, flush near-zero modes, list bad/quiet slots in `ended`; returns how many.
    int settle(const int32_t* active, int count, double threshold);
    // Readout weights from a readout graph's output rows (count, modes, 2), times output_gain and tilt.
    void set_readout(const int32_t* active, int count, const float* c_rows);

private:
    bool fma_;
};

// Peak limiter in place on x[0..n): instant attack to keep |y| <= ceiling, exponential release per sample.
void limit(float* x, int n, double& gain_state, double ceiling, double release_coef);

}  // namespace eigentone
