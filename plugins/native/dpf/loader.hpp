// The plugin's loader thread: reads and validates bundles and builds core Synths off the audio thread, and
// frees the Synths the audio thread retires. The audio thread talks to it only through atomics and a
// semaphore post (no lock, no allocation); other threads may also wait for a job to finish.
#pragma once
#include <semaphore.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eigentone_core.hpp"
#include "library.hpp"

namespace eigentone_plugin {

// A built Synth and which list entry it plays. Owned by whoever holds the pointer.
struct Voicing {
    std::unique_ptr<eigentone::Synth> synth;
    int index = -1;   // into the loader's entries
};

class Loader {
public:
    // entries: the instrument list (fixed for the plugin instance); synths get `capacity` voices.
    Loader(std::vector<BundleEntry> entries, double sample_rate, int capacity);
    ~Loader();
    Loader(const Loader&) = delete;
    Loader& operator=(const Loader&) = delete;

    const std::vector<BundleEntry>& entries() const { return entries_; }

    // Any thread, real-time safe: load entries[index] soon; the newest request wins.
    void request(int index) noexcept;
    // The instrument the host selected: the newest request, or the playing one once a request was refused.
    int selected() const noexcept { return selected_.load(std::memory_order_acquire); }

    // Non-real-time threads; block until the loader thread has done it.
    bool load_now(int index);                                       // false (logged) if it failed
    bool restore(const std::string& sha256, const std::string& name);  // by sha256 first, then by name
    void set_sample_rate(double sample_rate);                       // rebuild the current instrument's Synth

    // Audio thread hand-off, real-time safe.
    Voicing* take() noexcept;                    // the newest built Synth (caller owns it) or null
    bool can_retire() const noexcept;            // the retire slot is free
    void retire(Voicing* voicing) noexcept;      // freed on the loader thread; call only if can_retire()

    // The instrument of the newest successfully built Synth, as saved in the plugin state: "" if none.
    std::string state() const;                   // "<sha256> <index> <name>"
    int current_index() const noexcept { return current_index_.load(std::memory_order_acquire); }

private:
    enum class Job { None, Load, Restore, Rate };

    void run();
    void do_job(Job job);
    bool load(int index, const char* why, bool select);
    void publish(std::shared_ptr<const eigentone::Instrument> instrument, int index, bool select);
    int find(const std::string& sha256, const std::string& name, std::shared_ptr<const eigentone::Instrument>* found);
    bool submit(std::unique_lock<std::mutex>& lock, Job job);

    const std::vector<BundleEntry> entries_;
    const int capacity_;

    std::thread thread_;
    sem_t wake_;
    std::atomic<bool> quit_{false};
    std::atomic<int> requested_{-1};
    std::atomic<Voicing*> ready_{nullptr};
    std::atomic<Voicing*> retired_{nullptr};
    std::atomic<int> current_index_{-1};
    std::atomic<int> selected_{-1};

    // Jobs from non-real-time threads (one at a time; the job_* fields are set under mutex_ while no job is
    // pending and read by the loader thread while it is), and the saved-state string.
    mutable std::mutex mutex_;
    std::condition_variable done_;
    Job job_ = Job::None;
    uint64_t jobs_done_ = 0;
    bool job_ok_ = false;
    int job_index_ = -1;
    std::string job_sha256_, job_name_;
    double job_rate_ = 0;
    double sample_rate_;   // loader thread only
    std::shared_ptr<const eigentone::Instrument> instrument_;   // the newest loaded instrument
    std::string state_;
};

}  // namespace eigentone_plugin
