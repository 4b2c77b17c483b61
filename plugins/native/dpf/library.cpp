#include "library.hpp"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

namespace eigentone_plugin {

namespace {

const std::string kSuffix = ".etone";

std::vector<std::string> bundles_in(const std::string& dir) {
    std::vector<std::string> names;
    DIR* handle = opendir(dir.c_str());
    if (handle == nullptr) return names;
    while (const dirent* entry = readdir(handle)) {
        const std::string name = entry->d_name;
        if (name.size() > kSuffix.size() && name[0] != '.' &&
            name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
            names.push_back(name);
    }
    closedir(handle);
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

std::string data_dir() {
    const char* xdg = std::getenv("XDG_DATA_HOME");
    if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/eigentone";
    const char* home = std::getenv("HOME");
    return std::string(home != nullptr ? home : "") + "/.local/share/eigentone";
}

std::string shipped_dir() { return data_dir() + "/shipped"; }

std::string user_dir() { return data_dir() + "/instruments"; }

std::vector<BundleEntry> scan_instruments(size_t limit) {
    std::vector<BundleEntry> entries;
    std::set<std::string> shipped_names;
    for (const std::string& file : bundles_in(shipped_dir())) {
        const std::string name = file.substr(0, file.size() - kSuffix.size());
        shipped_names.insert(name);
        entries.push_back({name, shipped_dir() + "/" + file});
    }
    for (const std::string& file : bundles_in(user_dir())) {
        std::string name = file.substr(0, file.size() - kSuffix.size());
        if (shipped_names.count(name) != 0) name += " (user)";
        entries.push_back({name, user_dir() + "/" + file});
    }
    if (entries.size() > limit) entries.resize(limit);
    return entries;
}

void log_line(const std::string& message) {
    std::fprintf(stderr, "eigentone: %s\n", message.c_str());
    std::fflush(stderr);
}

}  // namespace eigentone_plugin
