// A minimal headless LV2 host for the plugin tests (lilv): renders MIDI through an instrument plugin, writes the
// stereo output as raw float32 (interleaved L R). Plugins are found on LV2_PATH.
//
//   lv2-host URI RATE BLOCK FRAMES EVENTS OUT.f32 [SYMBOL=VALUE ...]
//
// EVENTS: lines "FRAME STATUS DATA1 DATA2" (absolute frames, sorted). Control inputs start at their defaults;
// SYMBOL=VALUE overrides one. Features: urid:map, options (block lengths, sample rate), bounded block length,
// and a worker that runs scheduled work at once. The eigentone plugin loads a selected instrument on its own
// thread, so first the host runs silent blocks (1 ms apart, at most 10 s) until the output port `playing`
// equals the input `instrument`, then restarts the plugin (deactivate, activate) and renders. It prints
// "latency N" from the `lv2_latency` output port.
#include <lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/midi/midi.h>
#include <lv2/options/options.h>
#include <lv2/parameters/parameters.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <chrono>
#include <map>
#include <thread>
#include <sstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "lv2-host: %s\n", message.c_str());
    std::exit(1);
}

std::vector<std::string> g_uris;

LV2_URID map_uri(LV2_URID_Map_Handle, const char* uri) {
    for (size_t i = 0; i < g_uris.size(); ++i)
        if (g_uris[i] == uri) return static_cast<LV2_URID>(i + 1);
    g_uris.push_back(uri);
    return static_cast<LV2_URID>(g_uris.size());
}

const LV2_Worker_Interface* g_worker = nullptr;
LV2_Handle g_handle = nullptr;

LV2_Worker_Status respond(LV2_Worker_Respond_Handle, uint32_t size, const void* data) {
    return g_worker->work_response(g_handle, size, data);
}

LV2_Worker_Status schedule(LV2_Worker_Schedule_Handle, uint32_t size, const void* data) {
    if (g_worker == nullptr) return LV2_WORKER_ERR_UNKNOWN;
    return g_worker->work(g_handle, respond, nullptr, size, data);
}

struct Event {
    uint64_t frame;
    uint8_t bytes[3];
};

std::vector<Event> read_events(const char* path) {
    std::ifstream in(path);
    if (!in) fail(std::string(path) + ": cannot read");
    std::vector<Event> events;
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        unsigned long long frame;
        int a, b, c;
        if (fields >> frame >> a >> b >> c)
            events.push_back({frame, {static_cast<uint8_t>(a), static_cast<uint8_t>(b), static_cast<uint8_t>(c)}});
    }
    return events;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 7) {
        std::fprintf(stderr, "usage: lv2-host URI RATE BLOCK FRAMES EVENTS OUT.f32 [SYMBOL=VALUE ...]\n");
        return 2;
    }
    const char* uri = argv[1];
    const double rate = std::atof(argv[2]);
    const int block = std::atoi(argv[3]);
    const long frames = std::atol(argv[4]);
    const std::vector<Event> events = read_events(argv[5]);
    std::map<std::string, float> overrides;
    for (int i = 7; i < argc; ++i) {
        const char* eq = std::strchr(argv[i], '=');
        if (eq == nullptr) fail(std::string("expected SYMBOL=VALUE, got ") + argv[i]);
        overrides[std::string(argv[i], static_cast<size_t>(eq - argv[i]))] = static_cast<float>(std::atof(eq + 1));
    }

    LilvWorld* world = lilv_world_new();
    lilv_world_load_all(world);
    LilvNode* uri_node = lilv_new_uri(world, uri);
    const LilvPlugin* plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), uri_node);
    if (plugin == nullptr) fail(std::string(uri) + ": not found on LV2_PATH");

    LV2_URID_Map map{nullptr, map_uri};
    const int32_t min_block = 1, max_block = block;
    const float sample_rate = static_cast<float>(rate);
    const LV2_Options_Option options[] = {
        {LV2_OPTIONS_INSTANCE, 0, map_uri(nullptr, LV2_BUF_SIZE__minBlockLength), sizeof(int32_t),
         map_uri(nullptr, LV2_ATOM__Int), &min_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(nullptr, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t),
         map_uri(nullptr, LV2_ATOM__Int), &max_block},
        {LV2_OPTIONS_INSTANCE, 0, map_uri(nullptr, LV2_PARAMETERS__sampleRate), sizeof(float),
         map_uri(nullptr, LV2_ATOM__Float), &sample_rate},
        {LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, nullptr},
    };
    LV2_Worker_Schedule worker{nullptr, schedule};
    const LV2_Feature map_feature{LV2_URID__map, &map};
    const LV2_Feature options_feature{LV2_OPTIONS__options, const_cast<LV2_Options_Option*>(options)};
    const LV2_Feature bounded{LV2_BUF_SIZE__boundedBlockLength, nullptr};
    const LV2_Feature worker_feature{LV2_WORKER__schedule, &worker};
    const LV2_Feature* features[] = {&map_feature, &options_feature, &bounded, &worker_feature, nullptr};

    LilvInstance* instance = lilv_plugin_instantiate(plugin, rate, features);
    if (instance == nullptr) fail(std::string(uri) + ": instantiate failed");
    g_handle = lilv_instance_get_handle(instance);
    g_worker = static_cast<const LV2_Worker_Interface*>(lilv_instance_get_extension_data(instance, LV2_WORKER__interface));

    LilvNode* audio_class = lilv_new_uri(world, LV2_CORE__AudioPort);
    LilvNode* control_class = lilv_new_uri(world, LV2_CORE__ControlPort);
    LilvNode* atom_class = lilv_new_uri(world, LV2_ATOM__AtomPort);
    LilvNode* input_class = lilv_new_uri(world, LV2_CORE__InputPort);
    const uint32_t n_ports = lilv_plugin_get_num_ports(plugin);
    std::vector<float> controls(n_ports, 0.0f), defaults(n_ports, 0.0f);
    std::map<std::string, uint32_t> control_index;
    lilv_plugin_get_port_ranges_float(plugin, nullptr, nullptr, defaults.data());
    std::vector<std::vector<float>> audio;
    constexpr size_t kAtomBytes = 1 << 16;
    std::vector<std::vector<uint64_t>> atom_buffers;   // uint64 for 8-byte alignment
    LV2_Atom_Sequence* midi_in = nullptr;
    std::vector<LV2_Atom_Sequence*> atom_outputs;
    const LV2_URID midi_type = map_uri(nullptr, LV2_MIDI__MidiEvent);
    const LV2_URID sequence_type = map_uri(nullptr, LV2_ATOM__Sequence);
    const LV2_URID chunk_type = map_uri(nullptr, LV2_ATOM__Chunk);
    audio.reserve(n_ports);
    atom_buffers.reserve(n_ports);
    for (uint32_t i = 0; i < n_ports; ++i) {
        const LilvPort* port = lilv_plugin_get_port_by_index(plugin, i);
        const bool input = lilv_port_is_a(plugin, port, input_class);
        if (lilv_port_is_a(plugin, port, audio_class)) {
            if (input) fail("instrument plugins have no audio input here");
            audio.emplace_back(block, 0.0f);
            lilv_instance_connect_port(instance, i, audio.back().data());
        } else if (lilv_port_is_a(plugin, port, control_class)) {
            const std::string symbol = lilv_node_as_string(lilv_port_get_symbol(plugin, port));
            controls[i] = overrides.count(symbol) ? overrides[symbol] : defaults[i];
            control_index[symbol] = i;
            overrides.erase(symbol);
            lilv_instance_connect_port(instance, i, &controls[i]);
        } else if (lilv_port_is_a(plugin, port, atom_class)) {
            atom_buffers.emplace_back(kAtomBytes / 8, 0);
            auto* sequence = reinterpret_cast<LV2_Atom_Sequence*>(atom_buffers.back().data());
            if (input) midi_in = sequence;
            else atom_outputs.push_back(sequence);
            lilv_instance_connect_port(instance, i, sequence);
        } else {
            lilv_instance_connect_port(instance, i, nullptr);
        }
    }
    if (!overrides.empty()) fail("no control port '" + overrides.begin()->first + "'");
    if (audio.size() != 2 || midi_in == nullptr) fail("expected 2 audio outputs and one atom input");

    std::FILE* out = std::fopen(argv[6], "wb");
    if (out == nullptr) fail(std::string(argv[6]) + ": cannot write");
    // One run() of n frames; with `events`, the MIDI events of [position, position + n) go in.
    size_t next = 0;
    auto run_block = [&](long position, uint32_t n, bool events_in) {
        midi_in->atom.type = sequence_type;
        midi_in->atom.size = sizeof(LV2_Atom_Sequence_Body);
        midi_in->body.unit = 0;
        midi_in->body.pad = 0;
        for (; events_in && next < events.size() && events[next].frame < static_cast<uint64_t>(position + n); ++next) {
            auto* event = reinterpret_cast<LV2_Atom_Event*>(reinterpret_cast<uint8_t*>(&midi_in->body) +
                                                            midi_in->atom.size);
            event->time.frames = static_cast<int64_t>(std::max<uint64_t>(events[next].frame, position) - position);
            event->body.type = midi_type;
            event->body.size = 3;
            std::memcpy(event + 1, events[next].bytes, 3);
            midi_in->atom.size += lv2_atom_pad_size(sizeof(LV2_Atom_Event) + 3);
        }
        for (LV2_Atom_Sequence* sequence : atom_outputs) {
            sequence->atom.type = chunk_type;
            sequence->atom.size = kAtomBytes - sizeof(LV2_Atom);
        }
        lilv_instance_run(instance, n);
    };
    lilv_instance_activate(instance);
    if (control_index.count("playing") && control_index.count("instrument")) {
        for (int waited = 0; controls[control_index["playing"]] != controls[control_index["instrument"]]; ++waited) {
            if (waited == 10000) fail("the plugin never played the selected instrument");
            run_block(0, static_cast<uint32_t>(block), false);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        lilv_instance_deactivate(instance);
        lilv_instance_activate(instance);
    }
    std::vector<float> interleaved(2 * block);
    for (long position = 0; position < frames; position += block) {
        const uint32_t n = static_cast<uint32_t>(std::min<long>(block, frames - position));
        run_block(position, n, true);
        if (position == 0 && control_index.count("lv2_latency"))
            std::printf("latency %d\n", static_cast<int>(controls[control_index["lv2_latency"]]));
        for (uint32_t k = 0; k < n; ++k) {
            interleaved[2 * k] = audio[0][k];
            interleaved[2 * k + 1] = audio[1][k];
        }
        std::fwrite(interleaved.data(), sizeof(float), 2 * n, out);
    }
    std::fclose(out);
    lilv_instance_deactivate(instance);
    lilv_instance_free(instance);
    for (LilvNode* node : {uri_node, audio_class, control_class, atom_class, input_class}) lilv_node_free(node);
    lilv_world_free(world);
    return 0;
}
