#include "loader.hpp"

#include <cerrno>

namespace eigentone_plugin {

namespace {

std::string short_sha(const std::string& sha256) { return sha256.substr(0, 12) + "..."; }

}  // namespace

Loader::Loader(std::vector<BundleEntry> entries, double sample_rate, int capacity)
    : entries_(std::move(entries)), capacity_(capacity), sample_rate_(sample_rate) {
    sem_init(&wake_, 0, 0);
    thread_ = std::thread([this] { run(); });
}

Loader::~Loader() {
    quit_.store(true, std::memory_order_release);
    sem_post(&wake_);
    thread_.join();
    sem_destroy(&wake_);
    delete ready_.exchange(nullptr);
    delete retired_.exchange(nullptr);
}

void Loader::request(int index) noexcept {
    selected_.store(index, std::memory_order_release);
    requested_.store(index, std::memory_order_release);
    sem_post(&wake_);
}

bool Loader::load_now(int index) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return job_ == Job::None; });
    job_index_ = index;
    return submit(lock, Job::Load);
}

bool Loader::restore(const std::string& sha256, const std::string& name) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return job_ == Job::None; });
    job_sha256_ = sha256;
    job_name_ = name;
    return submit(lock, Job::Restore);
}

void Loader::set_sample_rate(double sample_rate) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return job_ == Job::None; });
    job_rate_ = sample_rate;
    submit(lock, Job::Rate);
}

// With mutex_ held and no job pending: hand `job` to the loader thread and wait until it is done.
bool Loader::submit(std::unique_lock<std::mutex>& lock, Job job) {
    job_ = job;
    const uint64_t ticket = jobs_done_ + 1;
    sem_post(&wake_);
    done_.wait(lock, [this, ticket] { return jobs_done_ >= ticket; });
    return job_ok_;
}

Voicing* Loader::take() noexcept { return ready_.exchange(nullptr, std::memory_order_acq_rel); }

bool Loader::can_retire() const noexcept { return retired_.load(std::memory_order_acquire) == nullptr; }

void Loader::retire(Voicing* voicing) noexcept {
    retired_.store(voicing, std::memory_order_release);
    sem_post(&wake_);
}

std::string Loader::state() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_;
}

void Loader::run() {
    while (true) {
        while (sem_wait(&wake_) != 0 && errno == EINTR) {
        }
        if (quit_.load(std::memory_order_acquire)) return;
        delete retired_.exchange(nullptr, std::memory_order_acq_rel);
        const int index = requested_.exchange(-1, std::memory_order_acq_rel);
        if (index >= 0) load(index, "selected", false);   // request() already selected it
        Job job;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job = job_;
        }
        if (job == Job::None) continue;
        do_job(job);
    }
}

void Loader::do_job(Job job) {
    bool ok = false;
    if (job == Job::Load) {
        ok = load(job_index_, "initial", true);
    } else if (job == Job::Rate) {
        sample_rate_ = job_rate_;
        if (instrument_) publish(instrument_, current_index_.load(), false);
        ok = true;
    } else if (job == Job::Restore) {
        std::shared_ptr<const eigentone::Instrument> found;
        const int index = find(job_sha256_, job_name_, &found);
        if (index >= 0) {
            publish(found, index, true);
            ok = true;
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    job_ok_ = ok;
    job_ = Job::None;
    ++jobs_done_;
    done_.notify_all();
}

bool Loader::load(int index, const char* why, bool select) {
    const int current = current_index_.load();
    const std::string keeping = current >= 0 ? "still playing '" + entries_[current].name + "'" : "no instrument playing";
    if (index < 0 || index >= static_cast<int>(entries_.size())) {
        log_line(std::string(why) + " instrument #" + std::to_string(index) + " is not in the list of " +
                 std::to_string(entries_.size()) + " (" + shipped_dir() + ", " + user_dir() + "); " + keeping);
        return false;
    }
    eigentone::LoadResult result = eigentone::load_instrument(entries_[index].path);
    if (!result.instrument) {
        log_line("refused " + result.error + "; " + keeping);
        int refused = index;   // the host's selection shows what plays again (unless it moved on meanwhile)
        selected_.compare_exchange_strong(refused, current);
        return false;
    }
    publish(result.instrument, index, select);
    return true;
}

void Loader::publish(std::shared_ptr<const eigentone::Instrument> instrument, int index, bool select) {
    auto* voicing = new Voicing{std::make_unique<eigentone::Synth>(instrument, sample_rate_, capacity_), index};
    delete ready_.exchange(voicing, std::memory_order_acq_rel);   // one the audio thread never took
    current_index_.store(index, std::memory_order_release);
    if (select) selected_.store(index, std::memory_order_release);
    const eigentone::InstrumentInfo& info = eigentone::info(*instrument);
    std::lock_guard<std::mutex> lock(mutex_);
    instrument_ = std::move(instrument);
    state_ = info.sha256 + " " + std::to_string(index) + " " + entries_[index].name;
}

int Loader::find(const std::string& sha256, const std::string& name,
                 std::shared_ptr<const eigentone::Instrument>* found) {
    // Bundles named like the saved one first: usually the first load is the right one.
    std::vector<int> order;
    for (int i = 0; i < static_cast<int>(entries_.size()); ++i)
        if (entries_[i].name == name) order.push_back(i);
    const size_t same_name = order.size();
    for (int i = 0; i < static_cast<int>(entries_.size()); ++i)
        if (entries_[i].name != name) order.push_back(i);
    int by_name = -1;
    std::shared_ptr<const eigentone::Instrument> by_name_instrument;
    for (size_t k = 0; k < order.size(); ++k) {
        eigentone::LoadResult result = eigentone::load_instrument(entries_[order[k]].path);
        if (!result.instrument) continue;
        if (eigentone::info(*result.instrument).sha256 == sha256) {
            *found = result.instrument;
            return order[k];
        }
        if (k < same_name && by_name < 0) {
            by_name = order[k];
            by_name_instrument = result.instrument;
        }
    }
    const int current = current_index_.load();
    const std::string keeping = current >= 0 ? "still playing '" + entries_[current].name + "'" : "no instrument playing";
    if (by_name >= 0) {
        log_line("saved instrument '" + name + "' (sha256 " + short_sha(sha256) + ") not found; playing " +
                 entries_[by_name].path + " instead (same name, sha256 " +
                 short_sha(eigentone::info(*by_name_instrument).sha256) + ")");
        *found = by_name_instrument;
        return by_name;
    }
    log_line("saved instrument '" + name + "' (sha256 " + short_sha(sha256) + ") is missing from " + shipped_dir() +
             " and " + user_dir() + " (install it with `eigentone install FILE.etone`); " + keeping);
    return -1;
}

}  // namespace eigentone_plugin
