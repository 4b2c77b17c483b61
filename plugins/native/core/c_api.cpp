// C API (c_api.h) over the C++ core.
#include "c_api.h"

#include <cstdio>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <vector>
#include <string>

#include "eigentone_core.hpp"
#include "graph.hpp"
#include "onnx_proto.hpp"

namespace {

void copy_text(const std::string& text, char* out, int size) {
    if (!out || size <= 0) return;
    size_t n = std::min(text.size(), size_t(size - 1));
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

}  // namespace

struct et_graph {
    std::unique_ptr<eigentone::Graph> graph;
};

extern "C" {

const char* et_version(void) { return "eigentone-core 1"; }

et_graph* et_graph_load(const uint8_t* onnx, size_t size, int max_batch, char* err, int err_size) {
    eigentone::onnx::Model model;
    std::string error;
    if (!eigentone::onnx::decode_model(onnx, size, model, error)) {
        copy_text("not a decodable ONNX model (" + error + ")", err, err_size);
        return nullptr;
    }
    auto graph = eigentone::Graph::compile(model, error);
    if (!graph || !graph->plan(max_batch, error)) {
        copy_text(error, err, err_size);
        return nullptr;
    }
    return new et_graph{std::move(graph)};
}

void et_graph_free(et_graph* graph) { delete graph; }

int et_graph_run(et_graph* graph, const float* input, int batch) { return graph->graph->run(input, batch) ? 1 : 0; }

const char* et_graph_error(const et_graph* graph) { return graph->graph->last_error(); }

int et_graph_outputs(const et_graph* graph) { return graph->graph->output_count(); }

const char* et_graph_output_name(const et_graph* graph, int k) { return graph->graph->output_name(k).c_str(); }

int et_graph_output_shape(const et_graph* graph, int k, int64_t* dims) {
    const eigentone::Value& v = graph->graph->output(k);
    for (int j = 0; j < v.shape.rank && j < 8; ++j) dims[j] = v.shape.d[j];
    return v.shape.rank;
}

const float* et_graph_output_data(const et_graph* graph, int k) { return graph->graph->output(k).fp(); }

int et_check_graph(const uint8_t* onnx, size_t size, char* out, int size_out) {
    eigentone::onnx::Model model;
    std::string error;
    if (!eigentone::onnx::decode_model(onnx, size, model, error)) {
        copy_text(error, out, size_out);
        return -1;
    }
    std::vector<std::string> problems = eigentone::unsupported(model);
    std::string text;
    for (const std::string& p : problems) text += p + "\n";
    copy_text(text, out, size_out);
    return int(problems.size());
}

}  // extern "C"

struct et_instrument {
    std::shared_ptr<const eigentone::Instrument> instrument;
};

struct et_synth {
    std::unique_ptr<eigentone::Synth> synth;
};

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
            out += buffer;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string number(double x) {
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "%.17g", x);
    return buffer;
}

}  // namespace

extern "C" {

et_instrument* et_instrument_load(const char* path, char* err, int err_size) {
    eigentone::LoadResult result = eigentone::load_instrument(path);
    if (!result.instrument) {
        copy_text(result.error, err, err_size);
        return nullptr;
    }
    return new et_instrument{result.instrument};
}

void et_instrument_free(et_instrument* instrument) { delete instrument; }

int et_instrument_info(const et_instrument* instrument, char* out, int size) {
    const eigentone::InstrumentInfo& i = eigentone::info(*instrument->instrument);
    std::string text = "{\"path\": " + json_string(i.path) + ", \"name\": " + json_string(i.name) +
                       ", \"family\": " + json_string(i.family) + ", \"description\": " + json_string(i.description) +
                       ", \"sha256\": " + json_string(i.sha256) + ", \"modes\": " + std::to_string(i.modes) +
                       ", \"note_lo\": " + std::to_string(i.note_lo) + ", \"note_hi\": " + std::to_string(i.note_hi) +
                       ", \"trained_sample_rate\": " + number(i.trained_sample_rate) +
                       ", \"release_time\": " + number(i.release_time) + ", \"output_gain\": " + number(i.output_gain) +
                       ", \"modulation\": " + (i.modulation ? "true" : "false") +
                       ", \"has_readout\": " + (i.has_readout ? "true" : "false") +
                       ", \"has_attack\": " + (i.has_attack ? "true" : "false") +
                       ", \"attack_samples\": " + std::to_string(i.attack_samples) +
                       ", \"attack_sample_rate\": " + number(i.attack_sample_rate) + "}";
    copy_text(text, out, size);
    return int(text.size());
}

void et_options_default(et_options* o) {
    eigentone::SynthOptions d;
    o->gain = d.gain;
    o->max_voices = d.max_voices;
    o->bend_range = d.bend_range;
    o->release_time = d.release_time;
    o->decay_scale = d.decay_scale;
    o->brightness = d.brightness;
    o->position = d.position;
    o->position_y = d.position_y;
    o->limiter = d.limiter;
    o->steal_fade = d.steal_fade;
}

et_synth* et_synth_new(const et_instrument* instrument, double sample_rate, int capacity, int block_size) {
    return new et_synth{std::make_unique<eigentone::Synth>(instrument->instrument, sample_rate, capacity, block_size)};
}

void et_synth_free(et_synth* synth) { delete synth; }

void et_synth_set_options(et_synth* synth, const et_options* o) {
    eigentone::SynthOptions options;
    options.gain = o->gain;
    options.max_voices = o->max_voices;
    options.bend_range = o->bend_range;
    options.release_time = o->release_time;
    options.decay_scale = o->decay_scale;
    options.brightness = o->brightness;
    options.position = o->position;
    options.position_y = o->position_y;
    options.limiter = o->limiter != 0;
    options.steal_fade = o->steal_fade != 0;
    synth->synth->set_options(options);
}

void et_synth_process(et_synth* synth, const et_event* events, int n_events, float* out, int n_frames) {
    static_assert(sizeof(et_event) == sizeof(eigentone::MidiEvent), "event layouts differ");
    synth->synth->process(reinterpret_cast<const eigentone::MidiEvent*>(events), n_events, out, n_frames);
}

void et_synth_render(et_synth* synth, const et_event* events, int n_events, float* out, int64_t n_frames,
                     int host_block) {
    std::vector<eigentone::MidiEvent> block;
    block.reserve(size_t(n_events));
    int e = 0;
    host_block = std::max(host_block, 1);
    for (int64_t start = 0; start < n_frames; start += host_block) {
        int n = int(std::min<int64_t>(host_block, n_frames - start));
        block.clear();
        while (e < n_events && int64_t(events[e].frame) < start + n) {
            eigentone::MidiEvent ev{uint32_t(std::max<int64_t>(int64_t(events[e].frame) - start, 0)), events[e].status,
                                    events[e].data1, events[e].data2};
            block.push_back(ev);
            ++e;
        }
        synth->synth->process(block.data(), int(block.size()), out + start, n);
    }
}

void et_synth_reset(et_synth* synth) { synth->synth->reset(); }

int et_bench_blocks(et_synth* synth, int voices, const int* notes, int n_notes, int block, int n_blocks, int paced,
                    double* seconds) {
    eigentone::Synth& s = *synth->synth;
    std::vector<eigentone::MidiEvent> events(size_t(std::max(voices, 1)));
    std::vector<float> out(static_cast<size_t>(block));
    for (int j = 0; j < voices; ++j) events[size_t(j)] = {0, 0x90, uint8_t(notes[j % n_notes]), 100};
    s.process(events.data(), voices, out.data(), block);
    const double budget = block / s.sample_rate();
    timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int restrikes = 0;
    for (int i = 0; i < n_blocks; ++i) {
        int missing = std::max(voices - s.sounding_voices(), 0);
        for (int j = 0; j < missing; ++j) events[size_t(j)] = {0, 0x90, uint8_t(notes[(i + j) % n_notes]), 100};
        restrikes += missing;
        timespec started, finished;
        clock_gettime(CLOCK_MONOTONIC, &started);
        s.process(events.data(), missing, out.data(), block);
        clock_gettime(CLOCK_MONOTONIC, &finished);
        seconds[i] = double(finished.tv_sec - started.tv_sec) + 1e-9 * double(finished.tv_nsec - started.tv_nsec);
        if (paced) {
            long step = long(budget * 1e9);
            deadline.tv_nsec += step;
            while (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_nsec -= 1000000000L;
                ++deadline.tv_sec;
            }
            bool late = finished.tv_sec > deadline.tv_sec ||
                        (finished.tv_sec == deadline.tv_sec && finished.tv_nsec >= deadline.tv_nsec);
            if (late) {
                deadline = finished;
            } else {
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr);
            }
        }
    }
    return restrikes;
}
int et_synth_latency(const et_synth* synth) { return synth->synth->latency_frames(); }
int et_synth_voices(const et_synth* synth) { return synth->synth->sounding_voices(); }
uint64_t et_synth_muted(const et_synth* synth) { return synth->synth->muted_voices(); }

}  // extern "C"

extern "C" const char* et_supported_ops(void) {
    static const std::string json = eigentone::supported_ops_json();
    return json.c_str();
}
