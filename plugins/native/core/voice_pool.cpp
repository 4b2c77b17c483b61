#include "voice_pool.hpp"

namespace eigentone {

VoicePool::VoicePool(int slots_) : slots(slots_) {
    size_t n = size_t(slots);
    sounding.assign(n, 0);
    key_down.assign(n, 0);
    sustained.assign(n, 0);
    releasing.assign(n, 0);
    fading.assign(n, 0);
    note.assign(n, 0);
    channel.assign(n, 0);
    born.assign(n, 0);
    active.assign(n, 0);
    position_.assign(n, 0);
}

void VoicePool::configure(int max_voices_, bool steal_fade) {
    max_voices = max_voices_ < 1 ? 1 : max_voices_;
    limit = max_voices + (steal_fade ? fade_slots(max_voices) : 0);
    if (max_voices > slots) max_voices = slots;
    if (limit > slots) limit = slots;
}

void VoicePool::allocate(const std::vector<double>& level, int& slot, int& stolen) {
    int playing = 0;
    int best = -1;
    bool best_held = false;
    double best_level = 0.0;
    int64_t best_born = 0;
    for (int j = 0; j < count; ++j) {
        int s = active[j];
        if (fading[s]) continue;
        ++playing;
        bool held = !releasing[s];   // key (not releasing, level, born): releasing voices sort first
        double l = level[s];
        int64_t b = born[s];
        bool less = best < 0 || (held != best_held ? !held : (l != best_level ? l < best_level : b < best_born));
        if (less) {
            best = s;
            best_held = held;
            best_level = l;
            best_born = b;
        }
    }
    stolen = -1;
    if (playing >= max_voices && best >= 0) {
        stolen = best;
        key_down[stolen] = 0;
        sustained[stolen] = 0;
        releasing[stolen] = 1;
        fading[stolen] = 1;
    }
    if (count >= limit || count >= slots) {   // no room left: cut the quietest (then oldest) fading voice
        int cut = -1;
        double cut_level = 0.0;
        int64_t cut_born = 0;
        for (int j = 0; j < count; ++j) {
            int s = active[j];
            if (!fading[s]) continue;
            double l = level[s];
            int64_t b = born[s];
            if (cut < 0 || l < cut_level || (l == cut_level && b < cut_born)) {
                cut = s;
                cut_level = l;
                cut_born = b;
            }
        }
        if (cut >= 0) {
            free(cut);
            slot = cut;
            if (cut == stolen) stolen = -1;
            return;
        }
    }
    for (int s = 0; s < slots; ++s)
        if (!sounding[s]) {
            slot = s;
            return;
        }
    slot = -1;   // unreachable: count < slots here
}

void VoicePool::start(int slot, int note_, int channel_) {
    sounding[slot] = 1;
    note[slot] = int16_t(note_);
    channel[slot] = int8_t(channel_);
    key_down[slot] = 1;
    sustained[slot] = 0;
    releasing[slot] = 0;
    fading[slot] = 0;
    born[slot] = births_++;
    position_[slot] = count;
    active[count++] = slot;
}

void VoicePool::free(int slot) {
    if (!sounding[slot]) return;
    sounding[slot] = key_down[slot] = sustained[slot] = releasing[slot] = fading[slot] = 0;
    int j = position_[slot];
    int last = active[count - 1];
    active[j] = last;
    position_[last] = j;
    --count;
}

int VoicePool::on_channel(int channel_, int32_t* out) const {
    int n = 0;
    for (int j = 0; j < count; ++j) {
        int s = active[j];
        if (channel[s] == channel_) out[n++] = s;
    }
    return n;
}

void VoicePool::clear() {
    while (count) free(active[count - 1]);
    births_ = 0;
}

}  // namespace eigentone
