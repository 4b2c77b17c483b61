// A minimal headless CLAP host for the plugin tests: loads a .clap through clap_entry, runs a small script,
// writes the stereo output as raw float32 (interleaved L R).
//
//   clap-host PLUGIN.clap SCRIPT OUT.f32
//
// Script lines (# comments): frames are absolute stream frames since the last `activate`.
//   activate RATE                 (re)activate at RATE Hz, max block 4096, stream frame 0; prints "latency N"
//   deactivate
//   blocks N | blocks random SEED LO HI        host block sizes from now on
//   midi FRAME STATUS DATA1 DATA2              queue a MIDI message (decimal or 0x..); FRAME "+N": N frames
//                                              after the current stream position
//   param NAME VALUE              send a parameter value with the next process call (frame offset 0)
//   render FRAMES                 process FRAMES frames
//   render_until NAME VALUE MAX   process blocks, 1 ms apart, until parameter NAME reads VALUE after a block (at
//                                 least one block, at most MAX frames); prints "reached NAME VALUE at FRAME"
//   save FILE | load FILE         plugin state
//   print NAME                    prints "NAME = VALUE"
//
// At exit it prints "process: A allocations, L mutex locks": malloc/calloc/realloc and pthread_mutex_lock calls
// made on the host thread inside the plugin's process() (this executable interposes them; link with -rdynamic).
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <iomanip>
#include <iterator>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "clap/entry.h"
#include "clap/ext/latency.h"
#include "clap/ext/params.h"
#include "clap/ext/state.h"
#include "clap/ext/thread-check.h"
#include "clap/host.h"
#include "clap/plugin-factory.h"
#include "clap/process.h"

// Counting interposers: active only on the host thread while it is inside plugin->process().
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* pointer, size_t size);
}
using LockFunction = int (*)(pthread_mutex_t*);
static LockFunction g_real_lock = nullptr;   // resolved in main() before anything runs
static thread_local bool t_in_process = false;
static uint64_t g_allocations = 0, g_locks = 0;

extern "C" void* malloc(size_t size) {
    if (t_in_process) ++g_allocations;
    return __libc_malloc(size);
}
extern "C" void* calloc(size_t count, size_t size) {
    if (t_in_process) ++g_allocations;
    return __libc_calloc(count, size);
}
extern "C" void* realloc(void* pointer, size_t size) {
    if (t_in_process) ++g_allocations;
    return __libc_realloc(pointer, size);
}
extern "C" int pthread_mutex_lock(pthread_mutex_t* mutex) {
    if (t_in_process) ++g_locks;
    if (g_real_lock == nullptr) g_real_lock = reinterpret_cast<LockFunction>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
    return g_real_lock(mutex);
}

namespace {

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "clap-host: %s\n", message.c_str());
    std::exit(1);
}

struct Queued {
    uint64_t frame;
    uint8_t bytes[3];
};

// Input events of one process call: MIDI messages and parameter values, sorted by time.
struct InputEvents {
    std::vector<clap_event_midi_t> midi;
    std::vector<clap_event_param_value_t> params;
    std::vector<const clap_event_header_t*> order;
    clap_input_events_t list{this, size, get};

    void finish() {
        order.clear();
        for (auto& p : params) order.push_back(&p.header);
        for (auto& m : midi) order.push_back(&m.header);
        std::stable_sort(order.begin(), order.end(),
                         [](const clap_event_header_t* a, const clap_event_header_t* b) { return a->time < b->time; });
    }
    static uint32_t size(const clap_input_events_t* list) {
        return static_cast<uint32_t>(static_cast<InputEvents*>(list->ctx)->order.size());
    }
    static const clap_event_header_t* get(const clap_input_events_t* list, uint32_t index) {
        return static_cast<InputEvents*>(list->ctx)->order[index];
    }
};

bool ignore_output(const clap_output_events_t*, const clap_event_header_t*) { return true; }

int64_t write_stream(const clap_ostream_t* stream, const void* buffer, uint64_t size) {
    static_cast<std::string*>(stream->ctx)->append(static_cast<const char*>(buffer), size);
    return static_cast<int64_t>(size);
}

struct ReadCursor {
    std::string data;
    size_t at = 0;
};

int64_t read_stream(const clap_istream_t* stream, void* buffer, uint64_t size) {
    auto* cursor = static_cast<ReadCursor*>(stream->ctx);
    const size_t n = std::min<size_t>(size, cursor->data.size() - cursor->at);
    std::memcpy(buffer, cursor->data.data() + cursor->at, n);
    cursor->at += n;
    return static_cast<int64_t>(n);
}

class Host {
public:
    Host(const char* path, const char* out_path) : out_(out_path, std::ios::binary) {
        if (!out_) fail(std::string(out_path) + ": cannot write");
        library_ = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (library_ == nullptr) fail(std::string(path) + ": " + dlerror());
        entry_ = static_cast<const clap_plugin_entry_t*>(dlsym(library_, "clap_entry"));
        if (entry_ == nullptr) fail(std::string(path) + ": no clap_entry symbol");
        if (!entry_->init(path)) fail(std::string(path) + ": clap_entry.init failed");
        auto* factory = static_cast<const clap_plugin_factory_t*>(entry_->get_factory(CLAP_PLUGIN_FACTORY_ID));
        if (factory == nullptr || factory->get_plugin_count(factory) < 1) fail(std::string(path) + ": no plugin");
        const clap_plugin_descriptor_t* descriptor = factory->get_plugin_descriptor(factory, 0);
        std::printf("plugin %s (%s)\n", descriptor->id, descriptor->name);
        host_.host_data = this;
        plugin_ = factory->create_plugin(factory, &host_, descriptor->id);
        if (plugin_ == nullptr || !plugin_->init(plugin_)) fail(std::string(path) + ": create/init failed");
        params_ = static_cast<const clap_plugin_params_t*>(plugin_->get_extension(plugin_, CLAP_EXT_PARAMS));
        state_ = static_cast<const clap_plugin_state_t*>(plugin_->get_extension(plugin_, CLAP_EXT_STATE));
        if (params_ == nullptr || state_ == nullptr) fail("the plugin lacks the params or state extension");
    }

    ~Host() {
        deactivate();
        plugin_->destroy(plugin_);
        entry_->deinit();
        dlclose(library_);
    }

    void run_line(const std::string& line) {
        std::istringstream in(line);
        std::string command;
        if (!(in >> command) || command[0] == '#') return;
        if (command == "activate") {
            double rate = 0;
            in >> rate;
            activate(rate);
        } else if (command == "deactivate") {
            deactivate();
        } else if (command == "blocks") {
            std::string kind;
            in >> kind;
            if (kind == "random") {
                unsigned seed = 0;
                in >> seed >> lo_ >> hi_;
                rng_.seed(seed);
                fixed_ = 0;
            } else {
                fixed_ = std::stoi(kind);
            }
        } else if (command == "midi") {
            std::string frame, a, b, c;
            in >> frame >> a >> b >> c;
            const uint64_t at = frame[0] == '+' ? position_ + std::stoull(frame.substr(1)) : std::stoull(frame, nullptr, 0);
            queued_.push_back({at,
                               {static_cast<uint8_t>(std::stoi(a, nullptr, 0)), static_cast<uint8_t>(std::stoi(b, nullptr, 0)),
                                static_cast<uint8_t>(std::stoi(c, nullptr, 0))}});
        } else if (command == "param") {
            std::string name;
            double value = 0;
            in >> std::quoted(name) >> value;
            clap_event_param_value_t event{};
            event.header = {sizeof(event), 0, CLAP_CORE_EVENT_SPACE_ID, CLAP_EVENT_PARAM_VALUE, 0};
            event.param_id = param_id(name);
            event.note_id = event.port_index = event.channel = event.key = -1;
            event.value = value;
            pending_params_.push_back(event);
        } else if (command == "render") {
            uint64_t frames = 0;
            in >> frames;
            render(frames);
        } else if (command == "render_until") {
            std::string name;
            double value = 0;
            uint64_t most = 0;
            in >> std::quoted(name) >> value >> most;
            const uint64_t start = position_;
            do {   // at least one block: it delivers the parameter values queued before
                if (position_ - start >= most) fail("parameter '" + name + "' never reached " + std::to_string(value));
                render(next_block());
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            } while (param_value(name) != value);
            std::printf("reached %s %g at %llu\n", name.c_str(), value, static_cast<unsigned long long>(position_));
        } else if (command == "save") {
            std::string file, data;
            in >> file;
            clap_ostream_t stream{&data, write_stream};
            if (!state_->save(plugin_, &stream)) fail("state save failed");
            std::ofstream(file, std::ios::binary) << data;
        } else if (command == "load") {
            std::string file;
            in >> file;
            std::ifstream source(file, std::ios::binary);
            if (!source) fail(file + ": cannot read");
            ReadCursor cursor{std::string(std::istreambuf_iterator<char>(source), {}), 0};
            clap_istream_t stream{&cursor, read_stream};
            if (!state_->load(plugin_, &stream)) fail("state load failed");
        } else if (command == "print") {
            std::string name;
            in >> std::quoted(name);
            std::printf("%s = %g\n", name.c_str(), param_value(name));
        } else {
            fail("unknown script command '" + command + "'");
        }
        std::fflush(stdout);
    }

private:
    void activate(double rate) {
        deactivate();
        if (!plugin_->activate(plugin_, rate, 1, kMaxBlock)) fail("activate failed");
        if (!plugin_->start_processing(plugin_)) fail("start_processing failed");
        active_ = true;
        position_ = 0;
        auto* latency = static_cast<const clap_plugin_latency_t*>(plugin_->get_extension(plugin_, CLAP_EXT_LATENCY));
        std::printf("latency %u\n", latency != nullptr ? latency->get(plugin_) : 0u);
    }

    void deactivate() {
        if (!active_) return;
        plugin_->stop_processing(plugin_);
        plugin_->deactivate(plugin_);
        active_ = false;
    }

    uint32_t next_block() {
        if (fixed_ > 0) return static_cast<uint32_t>(fixed_);
        return std::uniform_int_distribution<uint32_t>(lo_, hi_)(rng_);
    }

    void render(uint64_t frames) {
        if (!active_) fail("render before activate");
        for (uint64_t done = 0; done < frames;) {
            const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>({next_block(), frames - done, kMaxBlock}));
            process(n);
            done += n;
        }
    }

    void process(uint32_t n) {
        InputEvents events;
        events.params.swap(pending_params_);
        std::stable_sort(queued_.begin(), queued_.end(), [](const Queued& a, const Queued& b) { return a.frame < b.frame; });
        size_t used = 0;
        for (; used < queued_.size() && queued_[used].frame < position_ + n; ++used) {
            clap_event_midi_t event{};
            const uint64_t frame = std::max(queued_[used].frame, position_);
            event.header = {sizeof(event), static_cast<uint32_t>(frame - position_), CLAP_CORE_EVENT_SPACE_ID,
                            CLAP_EVENT_MIDI, 0};
            event.port_index = 0;
            std::memcpy(event.data, queued_[used].bytes, 3);
            events.midi.push_back(event);
        }
        queued_.erase(queued_.begin(), queued_.begin() + static_cast<long>(used));
        events.finish();

        std::vector<float> left(n), right(n);
        float* channels[2] = {left.data(), right.data()};
        clap_audio_buffer_t output{};
        output.data32 = channels;
        output.channel_count = 2;
        clap_output_events_t out_events{nullptr, ignore_output};
        clap_process_t process{};
        process.steady_time = static_cast<int64_t>(position_);
        process.frames_count = n;
        process.audio_outputs = &output;
        process.audio_outputs_count = 1;
        process.in_events = &events.list;
        process.out_events = &out_events;
        t_in_process = true;
        const clap_process_status status = plugin_->process(plugin_, &process);
        t_in_process = false;
        if (status == CLAP_PROCESS_ERROR) fail("process returned an error");
        std::vector<float> interleaved(2 * n);
        for (uint32_t k = 0; k < n; ++k) {
            interleaved[2 * k] = left[k];
            interleaved[2 * k + 1] = right[k];
        }
        out_.write(reinterpret_cast<const char*>(interleaved.data()), static_cast<std::streamsize>(sizeof(float) * 2 * n));
        position_ += n;
    }

    clap_id param_id(const std::string& name) const {
        for (uint32_t i = 0, count = params_->count(plugin_); i < count; ++i) {
            clap_param_info_t info{};
            if (params_->get_info(plugin_, i, &info) && name == info.name) return info.id;
        }
        fail("no parameter named '" + name + "'");
    }

    double param_value(const std::string& name) const {
        double value = 0;
        if (!params_->get_value(plugin_, param_id(name), &value)) fail("cannot read parameter '" + name + "'");
        return value;
    }

    // Everything runs on this one thread, which is both the main and the audio thread of the CLAP model.
    static const void* get_extension(const clap_host_t*, const char* id) {
        static const clap_host_latency_t latency{[](const clap_host_t*) {}};
        static const clap_host_thread_check_t threads{[](const clap_host_t*) { return true; },
                                                      [](const clap_host_t*) { return true; }};
        if (std::strcmp(id, CLAP_EXT_LATENCY) == 0) return &latency;
        if (std::strcmp(id, CLAP_EXT_THREAD_CHECK) == 0) return &threads;
        return nullptr;
    }
    static void request(const clap_host_t*) {}

    static constexpr uint32_t kMaxBlock = 4096;
    clap_host_t host_{CLAP_VERSION_INIT, nullptr, "eigentone test host", "eigentone", "", "0.1",
                      get_extension, request, request, request};
    void* library_ = nullptr;
    const clap_plugin_entry_t* entry_ = nullptr;
    const clap_plugin_t* plugin_ = nullptr;
    const clap_plugin_params_t* params_ = nullptr;
    const clap_plugin_state_t* state_ = nullptr;
    std::ofstream out_;
    bool active_ = false;
    uint64_t position_ = 0;
    int fixed_ = 64, lo_ = 1, hi_ = 64;
    std::mt19937 rng_;
    std::vector<Queued> queued_;
    std::vector<clap_event_param_value_t> pending_params_;
};

}  // namespace

int main(int argc, char** argv) {
    g_real_lock = reinterpret_cast<LockFunction>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
    if (argc != 4) {
        std::fprintf(stderr, "usage: clap-host PLUGIN.clap SCRIPT OUT.f32\n");
        return 2;
    }
    std::ifstream script(argv[2]);
    if (!script) fail(std::string(argv[2]) + ": cannot read the script");
    Host host(argv[1], argv[3]);
    for (std::string line; std::getline(script, line);) host.run_line(line);
    std::printf("process: %llu allocations, %llu mutex locks\n", static_cast<unsigned long long>(g_allocations),
                static_cast<unsigned long long>(g_locks));
    return 0;
}
