#include "player.hpp"

#include <algorithm>

namespace eigentone_plugin {

namespace {

constexpr double kMaxRingOut = 2.0;    // seconds the previous instrument may ring out after a swap
constexpr double kFadeOut = 0.01;      // seconds of linear fade at the end of that time

}  // namespace

Player::Player(Loader& loader) : loader_(loader) {
    for (int c = 0; c < 16; ++c) {
        bend_[c] = 8192;
        sustain_[c] = false;
    }
}

Player::~Player() {
    delete current_;
    delete pending_;
    delete fading_;
}

void Player::reset() {
    if (Voicing* next = loader_.take()) {
        delete pending_;
        pending_ = next;
    }
    if (pending_ != nullptr) {
        delete current_;
        current_ = pending_;
        pending_ = nullptr;
        current_->synth->set_options(options_);
    }
    delete fading_;
    fading_ = nullptr;
    if (current_ != nullptr) current_->synth->reset();
    position_ = 0;
    for (int c = 0; c < 16; ++c) {
        bend_[c] = 8192;
        sustain_[c] = false;
    }
}

void Player::set_options(const eigentone::SynthOptions& options) noexcept {
    options_ = options;
    if (current_ != nullptr) current_->synth->set_options(options_);
}

void Player::track(const eigentone::MidiEvent& event) noexcept {
    const int kind = event.status & 0xF0, channel = event.status & 0x0F;
    if (kind == 0xE0) {
        bend_[channel] = static_cast<uint16_t>(event.data2 << 7 | event.data1);
    } else if (kind == 0xB0 && event.data1 == 64) {
        sustain_[channel] = event.data2 >= 64;
    } else if (kind == 0xB0 && event.data1 == 121) {
        bend_[channel] = 8192;
        sustain_[channel] = false;
    }
}

void Player::render(Voicing& voicing, const eigentone::MidiEvent* events, int n_events, float* out, int n) noexcept {
    voicing.synth->process(events, n_events, out, n);
}

void Player::render_fading(float* out, int n) noexcept {
    if (fading_ == nullptr) return;
    const double rate = fading_->synth->sample_rate();
    const int64_t ramp = std::max<int64_t>(1, static_cast<int64_t>(kFadeOut * rate));
    for (int done = 0; done < n;) {
        const int chunk = std::min(n - done, static_cast<int>(sizeof(scratch_) / sizeof(scratch_[0])));
        if (!fading_started_) {
            // All notes off on every channel: held and sustained notes start their release now.
            eigentone::MidiEvent off[16];
            for (int c = 0; c < 16; ++c) off[c] = {0, static_cast<uint8_t>(0xB0 | c), 123, 0};
            fading_->synth->process(off, 16, scratch_, chunk);
            fading_started_ = true;
        } else {
            fading_->synth->process(nullptr, 0, scratch_, chunk);
        }
        for (int k = 0; k < chunk; ++k) {
            const double gain = std::min<double>(1.0, static_cast<double>(std::max<int64_t>(0, fade_left_ - k)) / ramp);
            out[done + k] += static_cast<float>(gain * scratch_[k]);
        }
        fade_left_ -= chunk;
        fading_silent_ = fading_->synth->sounding_voices() == 0 ? fading_silent_ + chunk : 0;
        done += chunk;
    }
    // Done once no voice sounds and the core's latency has flushed, or the ring-out time is over.
    const bool finished = fading_silent_ >= 2 * kInternalBlock || fade_left_ <= 0;
    if (finished && loader_.can_retire()) {
        loader_.retire(fading_);
        fading_ = nullptr;
    }
}

// Precondition: fading_ is null or the loader's retire slot is free (checked by process()).
void Player::swap_in(Voicing* next) noexcept {
    if (fading_ != nullptr) loader_.retire(fading_);
    fading_ = current_;
    fading_started_ = false;
    fading_silent_ = 0;
    fade_left_ = fading_ != nullptr ? static_cast<int64_t>(kMaxRingOut * fading_->synth->sample_rate()) : 0;
    current_ = next;
    current_->synth->set_options(options_);
}

void Player::process(const eigentone::MidiEvent* events, int n_events, float* out, int n) noexcept {
    n_events = std::min(n_events, kMaxEvents);
    if (pending_ == nullptr) pending_ = loader_.take();
    int split = n;   // frame at which pending_ takes over (n: not in this call)
    if (pending_ != nullptr) {
        const int boundary = static_cast<int>((kInternalBlock - position_ % kInternalBlock) % kInternalBlock);
        if (boundary < n && (fading_ == nullptr || loader_.can_retire())) split = boundary;
    }
    int before = 0;
    while (before < n_events && static_cast<int>(events[before].frame) < split) track(events[before++]);
    if (split > 0) {
        if (current_ != nullptr) {
            render(*current_, events, before, out, split);
        } else {
            std::fill(out, out + split, 0.0f);
        }
        render_fading(out, split);
    }
    if (split < n) {
        swap_in(pending_);
        pending_ = nullptr;
        // The new Synth starts with the controllers the host has set (pitch bend, sustain pedal).
        int count = 0;
        for (int c = 0; c < 16; ++c) {
            if (bend_[c] != 8192)
                shifted_[count++] = {0, static_cast<uint8_t>(0xE0 | c), static_cast<uint8_t>(bend_[c] & 0x7F),
                                     static_cast<uint8_t>(bend_[c] >> 7)};
            if (sustain_[c]) shifted_[count++] = {0, static_cast<uint8_t>(0xB0 | c), 64, 127};
        }
        for (int e = before; e < n_events; ++e) {
            track(events[e]);
            shifted_[count] = events[e];
            shifted_[count++].frame -= static_cast<uint32_t>(split);
        }
        render(*current_, shifted_, count, out + split, n - split);
        render_fading(out + split, n - split);
    }
    position_ += static_cast<uint64_t>(n);
}

}  // namespace eigentone_plugin
