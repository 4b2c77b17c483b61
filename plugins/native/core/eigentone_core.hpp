// eigentone native core: the public C++ API the DAW plugin (plugins/native/dpf) builds on.
//
// C++17, no framework. It plays a `.etone` bundle exactly like the Python engine (engine/synth.py is the
// reference; docs/engine-semantics.md): the same validation as engine/bundle.py, the same level gain as
// engine/instrument.py, the same modal bank, voice pool and MIDI semantics.
//
// Threads: load_instrument() and the Synth constructor allocate and read files (call them off the audio
// thread). Synth::process, set_options, reset and the getters are real-time safe: no allocation, no lock,
// no logging, no file access (tests/test_native_realtime.py counts allocations to prove it).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eigentone {

// One raw MIDI channel message at a frame offset inside one process() call; events sorted by frame.
struct MidiEvent {
    uint32_t frame;            // 0 <= frame < n_frames
    uint8_t status, data1, data2;
};

class Instrument;              // a validated, levelled bundle; immutable after loading; share it freely

struct InstrumentInfo {
    std::string path, name, family, description;
    std::string sha256;        // of the .etone file's bytes (plugin state stores name + this)
    int modes = 0, note_lo = 0, note_hi = 127;
    double trained_sample_rate = 0, release_time = 0, output_gain = 1;
    bool modulation = false, has_readout = false, has_attack = false;
    int attack_samples = 0;            // L of the attack table (0 without one)
    double attack_sample_rate = 0;     // Hz of the attack table
};

struct LoadResult {
    std::shared_ptr<const Instrument> instrument;   // null on failure
    std::string error;                              // one line "<path>: <problem>" on failure
};

// Read a .etone zip (or folder), validate it with the same rules as engine/bundle.py, check that every graph
// uses only the supported op subset, run the probe, compute the level gain. NOT real-time safe.
LoadResult load_instrument(const std::string& path);
const InstrumentInfo& info(const Instrument&);

// Player options; defaults reproduce `eigentone render` exactly.
struct SynthOptions {
    double gain = 1.0;             // linear
    int max_voices = 64;           // <= the capacity given to the Synth constructor
    double bend_range = 2.0;       // semitones
    double release_time = -1.0;    // seconds (T60 after note-off); < 0: the bundle's own
    double decay_scale = 1.0;      // T60 multiplier of every mode
    double brightness = 0.0;       // -1..1, tilt (omega/omega_note)^b
    double position = 0.2, position_y = 0.37;
    bool limiter = true, steal_fade = true;
};

class Synth {
public:
    // Allocates everything for up to `capacity` playing voices (+ fade slots) of `instrument`.
    Synth(std::shared_ptr<const Instrument> instrument, double sample_rate, int capacity, int block_size = 64);
    ~Synth();
    Synth(const Synth&) = delete;
    Synth& operator=(const Synth&) = delete;
    void set_options(const SynthOptions& options);   // real-time safe; applies from the next internal block
    const SynthOptions& options() const;
    // Real-time safe: no allocation, locks, logging or file access. Any n_frames >= 0; the output does not
    // depend on how the stream is cut into process() calls, bit for bit (internal blocks of block_size samples
    // stay aligned to the stream start; see docs/engine-semantics.md). No latency: each event applies at its
    // own sample. Events are applied in order; a frame past n_frames applies at the last frame.
    void process(const MidiEvent* events, int n_events, float* out, int n_frames);
    void reset();                                    // silence every voice, stream position 0 (host activate)
    int latency_frames() const;                      // 0
    int sounding_voices() const;
    uint64_t muted_voices() const;                   // voices muted by the NaN/Inf guard since reset
    uint64_t dropped_events() const;                 // always 0 (events are applied as they come, no queue)
    double sample_rate() const;
    const Instrument& instrument() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace eigentone
