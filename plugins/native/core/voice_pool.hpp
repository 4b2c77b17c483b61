// Voice slots of one instrument: allocation, stealing and per-voice flags, as engine/voices.py.
//
// Stealing when max_voices voices play: a releasing voice first (the quietest of them), else the quietest
// held voice; ties go to the oldest. The stolen voice is marked fading and keeps its slot while it dies away
// (fade_slots spare slots); when every slot is taken the quietest (then oldest) fading voice is cut.
// The list of sounding slots (active[0..count)) is what the modal bank iterates over; a freed slot is swapped
// with the last entry, exactly like the Python pool, so voices are summed in the same order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace eigentone {

inline int fade_slots(int max_voices) { return max_voices / 4 > 4 ? max_voices / 4 : 4; }

class VoicePool {
public:
    explicit VoicePool(int slots);

    int slots;                    // allocated slots (capacity + its fade slots)
    int max_voices = 0;           // playing voices allowed (<= slots)
    int limit = 0;                // max_voices + fade slots in use (<= slots)
    std::vector<uint8_t> sounding, key_down, sustained, releasing, fading;
    std::vector<int16_t> note;
    std::vector<int8_t> channel;
    std::vector<int64_t> born;
    std::vector<int32_t> active;
    int count = 0;

    void configure(int max_voices, bool steal_fade);
    // A free slot for a new voice, and the slot stolen for it (now fading; -1 if none or it was cut).
    void allocate(const std::vector<double>& level, int& slot, int& stolen);
    void start(int slot, int note, int channel);
    void free(int slot);
    int on_channel(int channel, int32_t* out) const;
    void clear();

private:
    std::vector<int32_t> position_;
    int64_t births_ = 0;
};

}  // namespace eigentone
