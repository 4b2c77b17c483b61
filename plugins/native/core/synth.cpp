// The polyphonic synth of one instrument, mirroring engine/synth.py (read its module docstring: it is the
// spec) block for block. Differences in structure, not in output:
//   * the host's stream is cut into internal blocks of block_size frames aligned to the stream start, and a
//     block is rendered once all of its events are known (one block of latency, see eigentone_core.hpp);
//   * excite rows are evaluated in chunks of kExciteBatch note-ons (the Python engine makes one call per
//     block; the values are the same up to that many note-ons in one block);
//   * one instrument plays all 16 channels (the Python synth can map several).
#include <algorithm>
#include <cmath>

#include "eigentone_core.hpp"
#include "instrument.hpp"
#include "modal_bank.hpp"
#include "voice_pool.hpp"

namespace eigentone {
namespace {

constexpr double kSilence = 1e-5;                          // -100 dBFS: quieter voices are freed
const double kCutSigma = std::log(1000.0) / 0.005;         // stolen voices: 60 dB in 5 ms
constexpr int kMaxBlockEvents = 1024;                      // per internal block; more are dropped (counted)
constexpr int kExciteBatch = 32;                           // note-ons per excite call

}  // namespace

struct Synth::State {
    std::shared_ptr<const Instrument> instrument;
    double sample_rate;
    int block_size, capacity;
    SynthOptions options;
    SynthOptions pending;
    bool options_changed = false;
    double option_position = 0.2;   // the parameter value last applied (CC1 may override the current position)

    Graph excite, readout;
    bool has_readout;
    ModalBank bank;
    VoicePool pool;
    float output_gain;
    int modes;

    // channel state
    bool sustain[16];
    double bend_factor[16];
    double position, position_y;

    // internal block
    MidiEvent block_events[kMaxBlockEvents];
    int n_block_events = 0;
    int fill = 0;
    std::vector<float> ready, mix;
    std::vector<int32_t> selection;
    std::vector<float> controls;        // (kMaxBlockEvents, 4) note-on rows of the block
    std::vector<float> z_rows;          // (kGraphBatch, modes, 2) readout input
    std::vector<float> tilt_row;        // (modes,) brightness factors of one note-on
    int pending_notes = 0;
    int cursor = 0;                     // next note-on row
    int chunk_start = -1, chunk_rows = 0;
    bool chunk_ok = false;

    // attack component
    int attack_len = 0;
    double attack_step = 0.0;           // table samples per output sample
    std::vector<float> attack_table;    // (slots, attack_len)
    std::vector<int64_t> attack_k;      // samples played since the voice started; -1: no attack
    std::vector<double> attack_gain;

    double limiter_gain = 1.0, release_coef;
    uint64_t muted = 0, dropped = 0;

    State(std::shared_ptr<const Instrument> inst, double fs, int capacity_, int block)
        : instrument(std::move(inst)),
          sample_rate(fs),
          block_size(block),
          capacity(capacity_),
          excite(*instrument->excite),
          readout(instrument->readout ? *instrument->readout : Graph()),
          has_readout(instrument->readout != nullptr),
          bank(capacity_ + fade_slots(capacity_), instrument->info.modes, fs, block, instrument->info.modulation,
               float(instrument->info.output_gain)),
          pool(capacity_ + fade_slots(capacity_)),
          output_gain(float(instrument->info.output_gain)),
          modes(instrument->info.modes) {
        int slots = pool.slots;
        std::string error;
        // Batches as the Python engine makes them: all note-ons of a block (up to kExciteBatch per call) and
        // all sounding voices in one readout call (batch size decides which elements onnxruntime computes
        // on its scalar tail path, so it is kept the same).
        excite.plan(kExciteBatch, error);
        if (has_readout) readout.plan(slots, error);
        ready.assign(size_t(block), 0.0f);
        mix.assign(size_t(block), 0.0f);
        selection.assign(size_t(slots), 0);
        controls.assign(size_t(kMaxBlockEvents) * 4, 0.0f);
        z_rows.assign(size_t(slots) * size_t(modes) * 2, 0.0f);
        tilt_row.assign(size_t(modes), 1.0f);
        if (instrument->info.has_attack) {
            attack_len = instrument->info.attack_samples;
            attack_step = instrument->info.attack_sample_rate / fs;
            attack_table.assign(size_t(slots) * size_t(attack_len), 0.0f);
        }
        attack_k.assign(size_t(slots), -1);
        attack_gain.assign(size_t(slots), 1.0);
        release_coef = 1.0 - std::exp(-1.0 / (0.05 * fs));
        apply_options(options, true);
        reset();
    }

    void reset() {
        pool.clear();
        for (int ch = 0; ch < 16; ++ch) {
            sustain[ch] = false;
            bend_factor[ch] = 1.0;
        }
        position = options.position;
        position_y = options.position_y;
        option_position = options.position;
        std::fill(ready.begin(), ready.end(), 0.0f);
        n_block_events = 0;
        fill = 0;
        limiter_gain = 1.0;
        muted = dropped = 0;
        std::fill(attack_k.begin(), attack_k.end(), -1);
    }

    void apply_options(const SynthOptions& o, bool first) {
        bool decay_changed = o.decay_scale != options.decay_scale;
        options = o;
        options.max_voices = std::clamp(o.max_voices, 1, capacity);
        pool.configure(options.max_voices, options.steal_fade);
        bank.decay_scale = options.decay_scale > 0 ? options.decay_scale : 1.0;
        if (first || o.position != option_position) {
            position = o.position;
            option_position = o.position;
        }
        position_y = o.position_y;
        if (decay_changed && pool.count) bank.poles(pool.active.data(), pool.count, false);
    }

    double release_sigma() const {
        double t = options.release_time >= 0 ? options.release_time : instrument->info.release_time;
        return std::log(1000.0) / std::max(t, 1e-3);
    }

    // ---- one internal block (engine/synth.py Synth.process with n_frames = block_size) ----

    void render_block() {
        if (options_changed) {
            apply_options(pending, false);
            options_changed = false;
        }
        const int n = block_size;
        float* out = mix.data();
        std::fill(out, out + n, 0.0f);
        // Note-on rows with the controls in effect at each note's offset.
        pending_notes = 0;
        double pos = position;
        for (int e = 0; e < n_block_events; ++e) {
            const MidiEvent& ev = block_events[e];
            int kind = ev.status & 0xF0;
            if (kind == 0xB0 && ev.data1 == 1) pos = ev.data2 / 127.0;
            if (kind == 0x90 && ev.data2 > 0) {
                float* row = controls.data() + 4 * pending_notes++;
                row[0] = float(ev.data1);
                row[1] = float(ev.data2 / 127.0);
                row[2] = float(pos);
                row[3] = float(position_y);
            }
        }
        cursor = 0;
        chunk_start = -1;
        if (pool.count) {
            if (has_readout) apply_readout();
            if (bank.modulated) bank.poles(pool.active.data(), pool.count, true);
        }
        int at = 0;
        for (int e = 0; e < n_block_events; ++e) {
            const MidiEvent& ev = block_events[e];
            int offset = std::min(std::max(int(ev.frame), at), n);
            if (offset > at) {
                render(out, at, offset);
                at = offset;
            }
            apply(ev.status, ev.data1, ev.data2);
        }
        if (at < n) render(out, at, n);
        double threshold = kSilence / std::max(std::fabs(options.gain), 1e-12);
        end_block(threshold);
        if (options.gain != 1.0) {
            float g = float(options.gain);
            for (int k = 0; k < n; ++k) out[k] *= g;
        }
        if (options.limiter) limit(out, n, limiter_gain, 0.977, release_coef);
        std::copy(out, out + n, ready.begin());
        n_block_events = 0;
    }

    void apply_readout() {
        const int32_t* active = pool.active.data();
        int count = pool.count;
        const int batch = readout.max_batch();
        for (int first = 0; first < count; first += batch) {
            int rows = std::min(batch, count - first);
            float* z = z_rows.data();
            for (int j = 0; j < rows; ++j) {
                int v = active[first + j];
                const float* zr = bank.row(bank.zr, v);
                const float* zi = bank.row(bank.zi, v);
                for (int m = 0; m < modes; ++m) {
                    z[(size_t(j) * modes + m) * 2] = zr[m];
                    z[(size_t(j) * modes + m) * 2 + 1] = zi[m];
                }
            }
            if (!readout.run(z, rows)) {   // a failing readout keeps the previous weights
                continue;
            }
            bank.set_readout(active + first, rows, readout.output(0).fp());
        }
    }

    void render(float* out, int start, int stop) {
        if (!pool.count) return;
        bank.advance(pool.active.data(), pool.count, out, start, stop);
        if (attack_len) render_attack(out, start, stop);
    }

    void render_attack(float* out, int start, int stop) {
        for (int j = 0; j < pool.count; ++j) {
            int v = pool.active[j];
            int64_t& k = attack_k[v];
            if (k < 0) continue;
            const float* table = attack_table.data() + size_t(v) * size_t(attack_len);
            double decay = pool.releasing[v] ? std::exp(-bank.sigma_floor[v] / sample_rate) : 1.0;
            for (int s = start; s < stop; ++s) {
                double t = double(k) * attack_step;
                if (t >= attack_len) {
                    k = -1;
                    break;
                }
                int64_t i = int64_t(t);
                double f = t - double(i);
                double next = i + 1 < attack_len ? table[i + 1] : 0.0;
                double a = double(table[i]) * (1.0 - f) + next * f;
                out[s] += float(double(output_gain) * attack_gain[v] * a);
                attack_gain[v] *= decay;
                ++k;
            }
        }
    }

    // The excite outputs of note-on `row`, evaluating its chunk of rows when needed.
    bool excite_row(int row) {
        if (chunk_start < 0 || row < chunk_start || row >= chunk_start + chunk_rows) {
            chunk_start = row;
            chunk_rows = std::min(kExciteBatch, pending_notes - row);
            chunk_ok = excite.run(controls.data() + 4 * size_t(row), chunk_rows);
        }
        return chunk_ok;
    }

    const float* output_row(int index, int row, int width) {
        if (index < 0) return nullptr;
        return excite.output(index).fp() + size_t(row - chunk_start) * size_t(width);
    }

    void note_on(int channel, int note) {
        int row = cursor++;
        if (row >= pending_notes || !excite_row(row)) {
            ++muted;
            return;
        }
        const ExciteOutputs& o = instrument->outputs;
        const float* sigma = output_row(o.sigma, row, modes);
        const float* omega = output_row(o.omega, row, modes);
        const float* z0 = output_row(o.z0, row, 2 * modes);
        const float* c = output_row(o.c, row, 2 * modes);
        const float* alpha = output_row(o.mod_alpha, row, modes);
        const float* beta = output_row(o.mod_beta, row, modes);
        const float* attack = output_row(o.attack, row, attack_len);
        bool finite = true;
        auto check = [&](const float* p, int width) {
            if (!p) return;
            for (int k = 0; k < width; ++k) finite = finite && std::isfinite(p[k]);
        };
        check(sigma, modes);
        check(omega, modes);
        check(z0, 2 * modes);
        check(c, 2 * modes);
        check(alpha, modes);
        check(beta, modes);
        check(attack, attack_len);
        if (!finite) {
            ++muted;
            return;
        }
        int slot, stolen;
        pool.allocate(bank.level, slot, stolen);
        if (stolen >= 0) release(stolen, kCutSigma);
        pool.start(slot, note, channel);
        const float* tilt = nullptr;
        if (options.brightness != 0.0) {
            const float* control = controls.data() + 4 * size_t(row);
            double omega_note = 2.0 * M_PI * 440.0 * std::pow(2.0, (double(control[0]) - 69.0) / 12.0);
            for (int m = 0; m < modes; ++m) {
                double factor = std::pow(double(omega[m]) / omega_note, options.brightness);
                tilt_row[size_t(m)] = float(std::clamp(factor, 1.0 / 16.0, 16.0));
            }
            tilt = tilt_row.data();
        }
        bank.load(slot, sigma, omega, z0, c, alpha, beta, tilt, bend_factor[channel]);
        if (attack_len && attack) {
            std::copy(attack, attack + attack_len, attack_table.begin() + size_t(slot) * size_t(attack_len));
            attack_k[slot] = 0;
            attack_gain[slot] = 1.0;
        } else {
            attack_k[slot] = -1;
        }
    }

    void note_off(int channel, int note) {
        for (int j = pool.count - 1; j >= 0; --j) {
            int slot = pool.active[j];
            if (pool.channel[slot] == channel && pool.note[slot] == note && pool.key_down[slot]) {
                pool.key_down[slot] = 0;
                if (sustain[channel]) {
                    pool.sustained[slot] = 1;
                } else {
                    release(slot, release_sigma());
                }
            }
        }
    }

    void release(int slot, double sigma) {
        pool.key_down[slot] = 0;
        pool.sustained[slot] = 0;
        pool.releasing[slot] = 1;
        bank.sigma_floor[slot] = std::max(bank.sigma_floor[slot], sigma);
        bank.pole_of(slot);
    }

    void free_voice(int slot) {
        pool.free(slot);
        attack_k[slot] = -1;
    }

    void apply(int status, int data1, int data2) {
        int kind = status & 0xF0, channel = status & 0x0F;
        if (kind == 0x90 && data2 > 0) {
            note_on(channel, data1);
        } else if (kind == 0x80 || kind == 0x90) {
            note_off(channel, data1);
        } else if (kind == 0xE0) {
            double semitones = (double((data2 << 7) | data1) - 8192.0) / 8192.0 * options.bend_range;
            bend_factor[channel] = std::pow(2.0, semitones / 12.0);
            int n = pool.on_channel(channel, selection.data());
            for (int j = 0; j < n; ++j) bank.scale[selection[j]] = bend_factor[channel];
            if (n) bank.poles(selection.data(), n, false);
        } else if (kind == 0xB0) {
            control(channel, data1, data2);
        }
    }

    void control(int channel, int number, int value) {
        if (number == 64) {
            bool down = value >= 64;
            bool was_down = sustain[channel];
            sustain[channel] = down;
            if (was_down && !down) {
                int n = pool.on_channel(channel, selection.data());
                for (int j = 0; j < n; ++j)
                    if (pool.sustained[selection[j]]) release(selection[j], release_sigma());
            }
        } else if (number == 120) {
            int n = pool.on_channel(channel, selection.data());
            for (int j = 0; j < n; ++j) free_voice(selection[j]);
        } else if (number == 121) {
            apply(0xE0 | channel, 0, 64);
            control(channel, 64, 0);
        } else if (number == 123) {
            int n = pool.on_channel(channel, selection.data());
            for (int j = 0; j < n; ++j)
                if (!pool.releasing[selection[j]]) release(selection[j], release_sigma());
        } else if (number == 1) {
            position = value / 127.0;
        }
    }

    void end_block(double threshold) {
        if (!pool.count) return;
        int n_ended = bank.settle(pool.active.data(), pool.count, threshold);
        for (int j = 0; j < n_ended; ++j) {
            int slot = bank.ended[j];
            if (bank.bad[slot]) {
                ++muted;
            } else if (attack_k[slot] >= 0) {
                continue;   // its attack is still playing
            }
            free_voice(slot);
        }
    }

    // ---- host stream -> internal blocks ----

    void process(const MidiEvent* events, int n_events, float* out, int n_frames) {
        int at = 0, e = 0;
        while (at < n_frames) {
            int take = std::min(n_frames - at, block_size - fill);
            while (e < n_events && int(events[e].frame) < at + take) {
                queue(events[e], fill + std::max(int(events[e].frame) - at, 0));
                ++e;
            }
            std::copy(ready.begin() + fill, ready.begin() + fill + take, out + at);
            fill += take;
            at += take;
            if (fill == block_size) {
                render_block();
                fill = 0;
            }
        }
        for (; e < n_events; ++e) queue(events[e], fill);   // frames past n_frames: at the next frame
    }

    void queue(const MidiEvent& ev, int offset) {
        if (n_block_events == kMaxBlockEvents) {
            ++dropped;
            return;
        }
        MidiEvent& slot = block_events[n_block_events++];
        slot = ev;
        slot.frame = uint32_t(offset);
    }
};

Synth::Synth(std::shared_ptr<const Instrument> instrument, double sample_rate, int capacity, int block_size)
    : state_(new State(std::move(instrument), sample_rate, std::max(capacity, 1), std::max(block_size, 1))) {}

Synth::~Synth() = default;

void Synth::set_options(const SynthOptions& options) {
    state_->pending = options;
    state_->options_changed = true;
}

const SynthOptions& Synth::options() const { return state_->options_changed ? state_->pending : state_->options; }

void Synth::process(const MidiEvent* events, int n_events, float* out, int n_frames) {
    state_->process(events, n_events, out, n_frames);
}

void Synth::reset() { state_->reset(); }
int Synth::latency_frames() const { return state_->block_size; }
int Synth::sounding_voices() const { return state_->pool.count; }
uint64_t Synth::muted_voices() const { return state_->muted; }
uint64_t Synth::dropped_events() const { return state_->dropped; }
double Synth::sample_rate() const { return state_->sample_rate; }
const Instrument& Synth::instrument() const { return *state_->instrument; }

}  // namespace eigentone
