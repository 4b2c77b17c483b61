// The polyphonic synth of one instrument, mirroring engine/synth.py (docs/engine-semantics.md is the spec)
// sample for sample, with no latency:
//   * internal blocks of block_size samples counted from the stream start (reset): at a block start the
//     readout graph and the pole modulation run for the sounding voices and w = c z; at a block end the state
//     moves to the block end, levels update and silent voices are freed -- whatever the host's buffer size;
//   * each event applies at its own sample; a note-on's excite graph runs when it arrives (one row per call,
//     so the result does not depend on which other notes share the host buffer);
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

// Rows a batched graph call runs with (engine/synth_kernel.py batch_rows): the next power of two, at least 8.
int batch_rows(int rows) {
    int size = 8;
    while (size < rows) size *= 2;
    return size;
}

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
    int modes;

    bool sustain[16];
    double bend_factor[16];
    double position, position_y;

    int64_t frames = 0;             // stream samples before this call
    int64_t begun = -1;             // index of the last internal block whose start work was done
    int block_offset = 0;           // sample of the internal block at which the current event applies
    double threshold = kSilence;
    std::vector<int32_t> selection;
    std::vector<float> z_rows;      // (slots, modes, 2) readout input
    std::vector<float> tilt_row;    // (modes,) brightness factors of one note-on

    double limiter_gain = 1.0, release_coef;
    uint64_t muted = 0;

    State(std::shared_ptr<const Instrument> inst, double fs, int capacity_, int block)
        : instrument(std::move(inst)),
          sample_rate(fs),
          block_size(block),
          capacity(capacity_),
          excite(*instrument->excite),
          readout(instrument->readout ? *instrument->readout : Graph()),
          has_readout(instrument->readout != nullptr),
          bank(capacity_ + fade_slots(capacity_), instrument->info.modes, fs, block, instrument->info.modulation,
               float(instrument->info.output_gain), instrument->info.has_attack ? instrument->info.attack_samples : 0,
               instrument->info.attack_sample_rate),
          pool(capacity_ + fade_slots(capacity_)),
          modes(instrument->info.modes) {
        int slots = pool.slots;
        std::string error;
        // The readout graph runs once per block on all sounding voices in one batch padded to the engine's batch
        // sizes (powers of two, at least 8: then no element lands on onnxruntime's scalar tail path).
        if (has_readout) readout.plan(batch_rows(slots), error);
        selection.assign(size_t(slots), 0);
        z_rows.assign(size_t(batch_rows(slots)) * size_t(modes) * 2, 0.0f);
        tilt_row.assign(size_t(modes), 1.0f);
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
        if (options_changed) {
            apply_options(pending, false);
            options_changed = false;
        }
        position = options.position;
        position_y = options.position_y;
        option_position = options.position;
        frames = 0;
        begun = -1;
        limiter_gain = 1.0;
        muted = 0;
    }

    void apply_options(const SynthOptions& o, bool first) {
        bool decay_changed = o.decay_scale != options.decay_scale;
        options = o;
        options.max_voices = std::clamp(o.max_voices, 1, capacity);
        options.decay_scale = std::clamp(o.decay_scale, 0.25, 4.0);
        options.brightness = std::clamp(o.brightness, -1.0, 1.0);
        pool.configure(options.max_voices, options.steal_fade);
        bank.decay_scale = options.decay_scale;
        if (first || o.position != option_position) {
            position = std::clamp(o.position, 0.0, 1.0);
            option_position = o.position;
        }
        position_y = std::clamp(o.position_y, 0.0, 1.0);
        // Poles change only where the state is anchored: here, at a block start.
        if (decay_changed && pool.count) bank.poles(pool.active.data(), pool.count, false);
    }

    double release_sigma() const {
        double t = options.release_time > 0 ? options.release_time : instrument->info.release_time;
        return std::log(1000.0) / std::max(t, 1e-3);
    }

    // ---- the stream (engine/synth.py Synth.process) ----

    void process(const MidiEvent* events, int n_events, float* out, int n_frames) {
        std::fill(out, out + std::max(n_frames, 0), 0.0f);
        threshold = kSilence / std::max(std::fabs(options.gain), 1e-12);
        int now = 0;
        int last = std::max(n_frames - 1, 0);
        for (int e = 0; e < n_events; ++e) {
            int offset = std::min(std::max(int(events[e].frame), now), last);
            render(out, now, offset);
            now = offset;
            begin_block_if_due(now);
            block_offset = int((frames + now) % block_size);
            apply(events[e].status, events[e].data1, events[e].data2, offset);
        }
        render(out, now, n_frames);
        frames += std::max(n_frames, 0);
    }

    void begin_block_if_due(int now) {
        int64_t frame = frames + now;
        if (frame % block_size != 0 || frame / block_size == begun) return;
        begun = frame / block_size;
        if (options_changed) {
            apply_options(pending, false);
            options_changed = false;
            threshold = kSilence / std::max(std::fabs(options.gain), 1e-12);
        }
        if (!pool.count) return;
        if (has_readout) apply_readout();
        if (bank.modulated) bank.poles(pool.active.data(), pool.count, true);
        bank.start_block(pool.active.data(), pool.count);
    }

    // Samples [start, stop) of this call, in pieces that do not cross internal block boundaries.
    void render(float* out, int start, int stop) {
        while (start < stop) {
            begin_block_if_due(start);
            int piece = int(std::min<int64_t>(stop, start + block_size - (frames + start) % block_size));
            if (pool.count) bank.advance(pool.active.data(), pool.count, out + start, piece - start);
            // Each sample of the mix is final once its piece is rendered: gain and limiter per sample.
            if (options.gain != 1.0) {
                float g = float(options.gain);
                for (int k = start; k < piece; ++k) out[k] *= g;
            }
            if (options.limiter) limit(out + start, piece - start, limiter_gain, 0.977, release_coef);
            start = piece;
            if ((frames + start) % block_size == 0) end_block();
        }
    }

    void apply_readout() {
        const int32_t* active = pool.active.data();
        int count = pool.count;
        float* z = z_rows.data();
        for (int j = 0; j < count; ++j) {
            int v = active[j];
            const float* zr = bank.row(bank.zr, v);
            const float* zi = bank.row(bank.zi, v);
            for (int m = 0; m < modes; ++m) {
                z[(size_t(j) * modes + m) * 2] = zr[m];
                z[(size_t(j) * modes + m) * 2 + 1] = zi[m];
            }
        }
        if (readout.run(z, batch_rows(count))) bank.set_readout(active, count, readout.output(0).fp());   // else: keep
    }

    void end_block() {
        if (!pool.count) return;
        int n_ended = bank.settle(pool.active.data(), pool.count, threshold);
        for (int j = 0; j < n_ended; ++j) {
            int slot = bank.ended[j];
            if (bank.bad[slot]) ++muted;
            pool.free(slot);
        }
    }

    // ---- events ----

    void note_on(int channel, int note, int velocity) {
        float controls[4] = {float(note), float(velocity / 127.0), float(position), float(position_y)};
        if (!excite.run(controls, 1)) {
            ++muted;
            return;
        }
        const ExciteOutputs& o = instrument->outputs;
        auto output = [&](int index) { return index >= 0 ? excite.output(index).fp() : nullptr; };
        const float *sigma = output(o.sigma), *omega = output(o.omega), *z0 = output(o.z0), *c = output(o.c);
        const float *alpha = output(o.mod_alpha), *beta = output(o.mod_beta), *attack = output(o.attack);
        bool finite = true;
        for (int k = 0; k < excite.output_count(); ++k) {
            const Value& value = excite.output(k);
            int64_t count = value.shape.numel();
            for (int64_t j = 0; j < count; ++j) finite = finite && std::isfinite(value.f[size_t(j)]);
        }
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
            brightness_tilt(omega, modes, double(note), options.brightness, tilt_row.data());
            tilt = tilt_row.data();
        }
        bank.load(slot, sigma, omega, z0, c, alpha, beta, attack, tilt, bend_factor[channel], block_offset);
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
        bank.release(slot, sigma, block_offset);
    }

    void apply(int status, int data1, int data2, int /*offset*/) {
        int kind = status & 0xF0, channel = status & 0x0F;
        if (kind == 0x90 && data2 > 0) {
            note_on(channel, data1, data2);
        } else if (kind == 0x80 || kind == 0x90) {
            note_off(channel, data1);
        } else if (kind == 0xE0) {
            double semitones = (double((data2 << 7) | data1) - 8192.0) / 8192.0 * options.bend_range;
            bend_factor[channel] = std::pow(2.0, semitones / 12.0);
            int n = pool.on_channel(channel, selection.data());
            if (n) bank.bend(selection.data(), n, bend_factor[channel], block_offset);
        } else if (kind == 0xB0) {
            control(channel, data1, data2);
        }
    }

    void control(int channel, int number, int value) {
        if (number == 1) {
            position = value / 127.0;
        } else if (number == 64) {
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
            for (int j = 0; j < n; ++j) pool.free(selection[j]);
        } else if (number == 121) {
            apply(0xE0 | channel, 0, 64, 0);
            control(channel, 64, 0);
        } else if (number == 123) {
            int n = pool.on_channel(channel, selection.data());
            for (int j = 0; j < n; ++j)
                if (!pool.releasing[selection[j]]) release(selection[j], release_sigma());
        }
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
int Synth::latency_frames() const { return 0; }
int Synth::sounding_voices() const { return state_->pool.count; }
uint64_t Synth::muted_voices() const { return state_->muted; }
uint64_t Synth::dropped_events() const { return 0; }
double Synth::sample_rate() const { return state_->sample_rate; }
const Instrument& Synth::instrument() const { return *state_->instrument; }

}  // namespace eigentone
