// The audio-thread side of the plugin: plays the current core Synth, swaps in a new one (from the Loader) at an
// internal block boundary, lets the previous one ring out its release, and hands it back to be freed.
#pragma once
#include <cstdint>

#include "eigentone_core.hpp"
#include "loader.hpp"

namespace eigentone_plugin {

constexpr int kInternalBlock = 64;   // the core's internal block (frames); Synths are built with it
constexpr int kMaxEvents = 2048;     // MIDI events per process() call; later ones are dropped

class Player {
public:
    explicit Player(Loader& loader);
    ~Player();
    Player(const Player&) = delete;
    Player& operator=(const Player&) = delete;

    // Not real-time (host activate / state restore while inactive): install a ready Synth at once,
    // silence everything and restart the stream at frame 0.
    void reset();

    // Real-time safe. Options apply from the next internal block, to this Synth and every later one.
    void set_options(const eigentone::SynthOptions& options) noexcept;

    // Real-time safe: render n frames of mono audio into out; events sorted by frame, 0 <= frame < n.
    void process(const eigentone::MidiEvent* events, int n_events, float* out, int n) noexcept;

    int playing_index() const noexcept { return current_ != nullptr ? current_->index : -1; }
    int latency() const noexcept { return current_ != nullptr ? current_->synth->latency_frames() : 0; }

private:
    void render(Voicing& voicing, const eigentone::MidiEvent* events, int n_events, float* out, int n) noexcept;
    void render_fading(float* out, int n) noexcept;
    void swap_in(Voicing* next) noexcept;
    void track(const eigentone::MidiEvent& event) noexcept;

    Loader& loader_;
    Voicing* current_ = nullptr;
    Voicing* pending_ = nullptr;     // taken from the loader, waiting for a block boundary
    Voicing* fading_ = nullptr;      // the previous Synth, released, ringing out
    int64_t fade_left_ = 0;          // frames before fading_ is faded out for good
    int64_t fading_silent_ = 0;      // frames fading_ has had no sounding voice
    bool fading_started_ = false;    // CC123 sent to fading_
    uint64_t position_ = 0;          // frames since reset(): internal blocks are aligned to it
    eigentone::SynthOptions options_;

    // Controller state replayed into a swapped-in Synth: pitch bend (14 bit) and sustain per channel.
    uint16_t bend_[16];
    bool sustain_[16];

    eigentone::MidiEvent shifted_[kMaxEvents + 32];
    float scratch_[1024];
};

}  // namespace eigentone_plugin
