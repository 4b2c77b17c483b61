// rt-check BUNDLE [--self-test]: proves that Synth::process allocates, locks and touches files on nothing.
//
// This program replaces malloc/calloc/realloc/free/memalign (and the global operator new/delete, which call
// them) and wraps pthread_mutex_lock, open/fopen/read/write and nanosleep. While "armed" each call is counted.
// It loads the bundle and builds a Synth (allowed to allocate), then arms the counters and renders ~10 s at
// 48 kHz in host buffers of 1..500 frames with single notes, chords that force voice stealing (capacity 8),
// pitch bends, sustain on/off, mod wheel, reset controllers, all notes off, all sound off, option changes and
// a reset. Exit 0 and "0 allocations, 0 locks, 0 file/sleep calls" when clean; 1 otherwise.
// --self-test allocates, locks and opens a file inside the armed region (the counters must see them).
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "eigentone_core.hpp"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<bool> armed{false};
std::atomic<long> allocations{0}, frees{0}, locks{0}, io{0};

template <class F>
F next(const char* name) {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
    if (armed) ++allocations;
    return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
    if (armed) ++allocations;
    return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
    if (armed) ++allocations;
    return __libc_realloc(p, n);
}
void free(void* p) {
    if (armed && p) ++frees;
    __libc_free(p);
}
void* memalign(size_t alignment, size_t n) {
    if (armed) ++allocations;
    return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
    if (armed) ++allocations;
    *out = __libc_memalign(alignment, n);
    return *out ? 0 : ENOMEM;
}
void* aligned_alloc(size_t alignment, size_t n) {
    if (armed) ++allocations;
    return __libc_memalign(alignment, n);
}
int pthread_mutex_lock(pthread_mutex_t* m) {
    static auto real = next<int (*)(pthread_mutex_t*)>("pthread_mutex_lock");
    if (armed) ++locks;
    return real(m);
}
int open(const char* path, int flags, ...) {
    static auto real = next<int (*)(const char*, int, ...)>("open");
    if (armed) ++io;
    va_list args;
    va_start(args, flags);
    int mode = (flags & O_CREAT) ? va_arg(args, int) : 0;
    va_end(args);
    return real(path, flags, mode);
}
FILE* fopen(const char* path, const char* mode) {
    static auto real = next<FILE* (*)(const char*, const char*)>("fopen");
    if (armed) ++io;
    return real(path, mode);
}
ssize_t read(int fd, void* buffer, size_t n) {
    static auto real = next<ssize_t (*)(int, void*, size_t)>("read");
    if (armed) ++io;
    return real(fd, buffer, n);
}
ssize_t write(int fd, const void* buffer, size_t n) {
    static auto real = next<ssize_t (*)(int, const void*, size_t)>("write");
    if (armed) ++io;
    return real(fd, buffer, n);
}
int nanosleep(const struct timespec* request, struct timespec* remaining) {
    static auto real = next<int (*)(const struct timespec*, struct timespec*)>("nanosleep");
    if (armed) ++io;
    return real(request, remaining);
}
}

void* operator new(size_t n) {
    void* p = malloc(n);
    if (!p) throw std::bad_alloc();
    return p;
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: rt-check BUNDLE [--self-test]\n");
        return 2;
    }
    bool self_test = argc > 2 && std::strcmp(argv[2], "--self-test") == 0;
    eigentone::LoadResult loaded = eigentone::load_instrument(argv[1]);
    if (!loaded.instrument) {
        std::fprintf(stderr, "rt-check: %s\n", loaded.error.c_str());
        return 2;
    }
    const double fs = 48000.0;
    eigentone::Synth synth(loaded.instrument, fs, 8);
    const eigentone::InstrumentInfo& info = eigentone::info(*loaded.instrument);
    int lo = info.note_lo, span = std::max(info.note_hi - info.note_lo, 1);
    std::vector<float> out(512);
    std::vector<eigentone::MidiEvent> events(64);
    eigentone::SynthOptions changed;
    changed.gain = 0.7;
    changed.bend_range = 7.0;
    changed.max_voices = 6;
    changed.release_time = 0.2;
    changed.decay_scale = 0.5;
    changed.brightness = 0.5;
    const int sizes[] = {1, 37, 64, 500, 128, 3};
    long blocks = 0, frames = 0;
    std::mutex mutex;

    armed = true;
    for (int step = 0; step < 4000; ++step) {
        int n = sizes[step % 6];
        int count = 0;
        auto add = [&](uint8_t status, int d1, int d2) {
            events[size_t(count)] = {uint32_t(count % n), status, uint8_t(d1 & 0x7F), uint8_t(d2 & 0x7F)};
            ++count;
        };
        int phase = step % 40;
        if (phase == 0) add(0x90, lo + step % span, 100);                        // single note
        if (phase == 5) for (int k = 0; k < 12; ++k) add(0x90, lo + (k * 5) % span, 60 + k);   // chord: steals
        if (phase == 8) add(0xE0, 0, 90);                                         // bend
        if (phase == 10) add(0xB0, 64, 127);                                      // sustain down
        if (phase == 12) for (int k = 0; k < 12; ++k) add(0x80, lo + (k * 5) % span, 0);
        if (phase == 15) add(0xB0, 1, step % 128);                                // mod wheel -> position
        if (phase == 18) add(0xB0, 64, 0);                                        // sustain up
        if (phase == 20) add(0xB0, 121, 0);                                       // reset controllers
        if (phase == 25) add(0xB0, 123, 0);                                       // all notes off
        if (phase == 30) add(0x91, lo + 3, 127);
        if (phase == 35) add(0xB1, 120, 0);                                       // all sound off
        if (step == 2000) synth.set_options(changed);
        if (step == 3000) synth.reset();
        synth.process(events.data(), count, out.data(), n);
        ++blocks;
        frames += n;
        if (self_test && step == 100) {
            int* p = new int[4];
            delete[] p;
            std::lock_guard<std::mutex> guard(mutex);
            if (FILE* f = fopen("/dev/null", "r")) std::fclose(f);
        }
    }
    armed = false;
    std::printf("rt-check %s: %ld process calls, %ld frames, %d voices at the end: %ld allocations, %ld frees, "
                "%ld locks, %ld file/sleep calls\n",
                info.name.c_str(), blocks, frames, synth.sounding_voices(), long(allocations), long(frees), long(locks),
                long(io));
    return allocations || frees || locks || io ? 1 : 0;
}
