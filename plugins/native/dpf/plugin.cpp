// The eigentone instrument plugin (DPF: VST3, CLAP and LV2 from this one source): host MIDI in, stereo out.
//
// Threads: the host's audio thread calls run() (and, for VST3/CLAP automation, setParameterValue()); it only
// reads atomics, renders through the Player and posts requests to the Loader. Bundle reading, validation and
// Synth construction happen on the Loader's thread; state restore and sample-rate changes (host main thread)
// wait for it.
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "DistrhoPlugin.hpp"
#include "library.hpp"
#include "loader.hpp"
#include "player.hpp"

START_NAMESPACE_DISTRHO

using eigentone_plugin::kMaxEvents;
using eigentone_plugin::log_line;

namespace {

enum ParameterIndex {
    kInstrument,   // index into the instrument list (not automatable: a swap loads a bundle)
    kGain,         // dB
    kMaxVoices,
    kBendRange,    // semitones
    kRelease,      // seconds (T60 after note-off); 0 = the instrument's own
    kDecayScale,   // x, multiplies every mode's T60
    kBrightness,   // -1..1 spectral tilt
    kPosition,     // 0..1 excitation point; MIDI CC1 sets it too (the last one wins)
    kPlaying,      // output: the list index of the instrument playing now (-1: none)
    kParameterCount
};

struct Spec {
    const char *name, *symbol, *unit;
    float min, max, def;
    uint32_t hints;
};

const Spec kSpecs[kParameterCount] = {
    {"Instrument", "instrument", "", 0, 0, 0, kParameterIsInteger},
    {"Output gain", "gain", "dB", -60, 12, 0, kParameterIsAutomatable},
    {"Max voices", "max_voices", "", 1, 128, 64, kParameterIsAutomatable | kParameterIsInteger},
    {"Pitch-bend range", "bend_range", "st", 0, 24, 2, kParameterIsAutomatable},
    {"Release time", "release_time", "s", 0, 10, 0, kParameterIsAutomatable},
    {"Decay scale", "decay_scale", "x", 0.25f, 4, 1, kParameterIsAutomatable | kParameterIsLogarithmic},
    {"Brightness", "brightness", "", -1, 1, 0, kParameterIsAutomatable},
    {"Position", "position", "", 0, 1, 0.2f, kParameterIsAutomatable},
    {"Playing instrument", "playing", "", -1, 0, -1, kParameterIsOutput | kParameterIsInteger},
};

constexpr int kCapacity = 128;                        // voices per Synth (the Max voices range)
const char* const kDefaultInstrument = "nylon-string";  // first choice of a new plugin instance
const char* const kStateKey = "instrument";

}  // namespace

class EigentonePlugin : public Plugin {
public:
    EigentonePlugin()
        : Plugin(kParameterCount, 0, 1), entries_(eigentone_plugin::scan_instruments()) {
        for (int i = 0; i < kParameterCount; ++i) values_[i].store(kSpecs[i].def);
        int first = 0;
        for (size_t i = 0; i < entries_.size(); ++i)
            if (entries_[i].name == kDefaultInstrument) first = static_cast<int>(i);
        default_instrument_ = first;
        if (isDummyInstance()) return;   // a host or the LV2 exporter asking for metadata only
        loader_.reset(new eigentone_plugin::Loader(entries_, getSampleRate(), kCapacity));
        player_.reset(new eigentone_plugin::Player(*loader_));
        if (entries_.empty()) {
            log_line("no instruments in " + eigentone_plugin::shipped_dir() + " or " + eigentone_plugin::user_dir() +
                     " (run `bash run.sh plugin` in the eigentone checkout, or `eigentone install FILE.etone`)");
        } else {
            loader_->load_now(first);
        }
        player_->reset();
        setLatency(player_->latency());
    }

protected:
    const char* getLabel() const override { return "eigentone"; }
    const char* getDescription() const override {
        return "Learned physical instruments (.etone bundles) played from MIDI, as `eigentone render` plays them.";
    }
    const char* getMaker() const override { return "eigentone"; }
    const char* getLicense() const override { return "MIT"; }
    uint32_t getVersion() const override { return d_version(0, 1, 0); }
    int64_t getUniqueId() const override { return d_cconst('E', 't', 'n', '1'); }

    void initParameter(uint32_t index, Parameter& parameter) override {
        const Spec& spec = kSpecs[index];
        parameter.hints = spec.hints;
        parameter.name = spec.name;
        parameter.symbol = spec.symbol;
        parameter.unit = spec.unit;
        parameter.ranges.min = spec.min;
        parameter.ranges.max = spec.max;
        parameter.ranges.def = spec.def;
        const int count = static_cast<int>(entries_.size());
        if (index == kInstrument || index == kPlaying) {
            parameter.ranges.max = static_cast<float>(std::max(0, count - 1));
            if (index == kInstrument) parameter.ranges.def = static_cast<float>(default_instrument_);
            if (count > 0) {
                parameter.enumValues.count = static_cast<uint8_t>(count);
                parameter.enumValues.restrictedMode = index == kInstrument;
                parameter.enumValues.values = new ParameterEnumerationValue[count];
                for (int i = 0; i < count; ++i)
                    parameter.enumValues.values[i] = ParameterEnumerationValue(i, entries_[i].name.c_str());
            }
        } else if (index == kRelease) {
            parameter.enumValues.count = 1;
            parameter.enumValues.restrictedMode = false;
            parameter.enumValues.values = new ParameterEnumerationValue[1];
            parameter.enumValues.values[0] = ParameterEnumerationValue(0, "instrument's own");
        }
    }

    float getParameterValue(uint32_t index) const override {
        if (index == kInstrument)
            return static_cast<float>(std::max(0, loader_ ? loader_->selected() : default_instrument_));
        if (index == kPlaying) return static_cast<float>(playing_.load());
        return values_[index].load();
    }

    // Called on the audio thread (VST3, CLAP automation) or a host thread (state restore): atomics only.
    void setParameterValue(uint32_t index, float value) override {
        if (index == kPlaying) return;
        if (index != kInstrument) {
            values_[index].store(value);
            return;
        }
        const int wanted = static_cast<int>(std::lround(value));
        if (!loader_ || wanted == loader_->selected()) return;
        if (wanted == stale_echo_.exchange(-1)) return;   // the saved index of a state restored by sha256
        loader_->request(wanted);
    }

    void initState(uint32_t, State& state) override {
        state.key = kStateKey;
        state.defaultValue = "";
        state.label = "Instrument (sha256 index name)";
        state.hints = kStateIsOnlyForDSP;
    }

    String getState(const char* key) const override {
        if (std::strcmp(key, kStateKey) != 0 || !loader_) return String();
        return String(loader_->state().c_str());
    }

    // "<sha256> <index> <name>": find the bundle by sha256, else by name; blocks until loaded (host thread).
    void setState(const char* key, const char* value) override {
        if (std::strcmp(key, kStateKey) != 0 || !loader_ || value == nullptr || value[0] == '\0') return;
        const std::string text(value);
        const size_t first = text.find(' '), second = text.find(' ', first + 1);
        if (first == std::string::npos || second == std::string::npos) {
            log_line("ignoring a saved instrument state that is not '<sha256> <index> <name>': '" + text + "'");
            return;
        }
        const std::string sha256 = text.substr(0, first), name = text.substr(second + 1);
        const int saved_index = std::atoi(text.substr(first + 1, second - first - 1).c_str());
        loader_->restore(sha256, name);   // on failure it logged why and the current instrument stays
        // Hosts restore the saved "Instrument" parameter too; on another machine that index may name another
        // bundle (or the saved one is missing), so the state decides and that one parameter echo is ignored.
        const int index = loader_->selected();
        stale_echo_.store(saved_index != index ? saved_index : -1);
    }

    void activate() override {
        if (!player_) return;
        player_->reset();
        setLatency(player_->latency());
    }

    void sampleRateChanged(double sample_rate) override {
        if (loader_) loader_->set_sample_rate(sample_rate);
    }

    void run(const float**, float** outputs, uint32_t frames, const MidiEvent* midi, uint32_t midi_count) override {
        stale_echo_.store(-1);
        if (!player_) {
            std::memset(outputs[0], 0, sizeof(float) * frames);
            std::memset(outputs[1], 0, sizeof(float) * frames);
            return;
        }
        update_options();
        int count = 0;
        for (uint32_t i = 0; i < midi_count && count < kMaxEvents; ++i) {
            const MidiEvent& event = midi[i];
            if (event.size < 1 || event.size > 3 || event.data[0] < 0x80 || event.data[0] >= 0xF0) continue;
            const uint8_t status = event.data[0];
            const uint8_t data1 = event.size > 1 ? event.data[1] : 0, data2 = event.size > 2 ? event.data[2] : 0;
            events_[count++] = {event.frame, status, data1, data2};
            // Mod wheel: the core moves the position itself at the event's frame; remember it so that the next
            // options update (any parameter change) keeps it until the Position parameter itself changes.
            if ((status & 0xF0) == 0xB0 && data1 == 1) options_.position = data2 / 127.0;
        }
        player_->process(events_, count, outputs[0], static_cast<int>(frames));
        std::memcpy(outputs[1], outputs[0], sizeof(float) * frames);
        playing_.store(player_->playing_index());
    }

private:
    // Parameters -> core options, only when a parameter changed (so CC1's position stands until then).
    void update_options() noexcept {
        const bool first = !options_applied_;   // the first run() applies every parameter
        options_applied_ = true;
        bool changed = first;
        for (int i = kGain; i <= kPosition; ++i) {
            const float value = values_[i].load();
            if (first || value != applied_[i]) {
                applied_[i] = value;
                changed = true;
                if (i == kPosition) options_.position = value;
            }
        }
        if (!changed) return;
        options_.gain = std::pow(10.0, applied_[kGain] / 20.0);
        options_.max_voices = std::max(1, std::min(kCapacity, static_cast<int>(std::lround(applied_[kMaxVoices]))));
        options_.bend_range = applied_[kBendRange];
        options_.release_time = applied_[kRelease] > 0 ? applied_[kRelease] : -1.0;
        options_.decay_scale = applied_[kDecayScale];
        options_.brightness = applied_[kBrightness];
        player_->set_options(options_);
    }

    const std::vector<eigentone_plugin::BundleEntry> entries_;
    std::unique_ptr<eigentone_plugin::Loader> loader_;
    std::unique_ptr<eigentone_plugin::Player> player_;
    std::atomic<float> values_[kParameterCount];
    int default_instrument_ = 0;        // a new instance's instrument (what dummy instances report)
    std::atomic<int> playing_{-1};
    std::atomic<int> stale_echo_{-1};
    float applied_[kParameterCount] = {};   // audio thread: the parameter values behind options_
    bool options_applied_ = false;
    eigentone::SynthOptions options_;
    eigentone::MidiEvent events_[kMaxEvents];

    DISTRHO_DECLARE_NON_COPYABLE_WITH_LEAK_DETECTOR(EigentonePlugin)
};

Plugin* createPlugin() { return new EigentonePlugin(); }

END_NAMESPACE_DISTRHO
