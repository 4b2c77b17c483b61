// Interim build skeleton so the plugin can link while the core is written: loading always fails with a
// clear message and the synth renders silence. Replaced by the real implementation.
#include "eigentone_core.hpp"

#include <algorithm>

namespace eigentone {

class Instrument {
public:
    InstrumentInfo info;
};

LoadResult load_instrument(const std::string& path) {
    return {nullptr, path + ": the native core cannot load bundles yet (work in progress)"};
}

const InstrumentInfo& info(const Instrument& instrument) { return instrument.info; }

struct Synth::State {
    std::shared_ptr<const Instrument> instrument;
    SynthOptions options;
    double sample_rate;
    int block_size;
};

Synth::Synth(std::shared_ptr<const Instrument> instrument, double sample_rate, int, int block_size)
    : state_(new State{std::move(instrument), {}, sample_rate, block_size}) {}
Synth::~Synth() = default;
void Synth::set_options(const SynthOptions& options) { state_->options = options; }
const SynthOptions& Synth::options() const { return state_->options; }
void Synth::process(const MidiEvent*, int, float* out, int n_frames) { std::fill(out, out + n_frames, 0.0f); }
void Synth::reset() {}
int Synth::latency_frames() const { return state_->block_size; }
int Synth::sounding_voices() const { return 0; }
uint64_t Synth::muted_voices() const { return 0; }
uint64_t Synth::dropped_events() const { return 0; }
double Synth::sample_rate() const { return state_->sample_rate; }
const Instrument& Synth::instrument() const { return *state_->instrument; }

}  // namespace eigentone
