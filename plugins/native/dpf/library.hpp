// The instrument folders the plugin lists, and its one-line messages to the host log. The folders: the shipped
// bundles that `bash run.sh plugin` installs and the user's own (`eigentone install X.etone`), both under
// $XDG_DATA_HOME/eigentone (default ~/.local/share/eigentone).
#pragma once
#include <string>
#include <vector>

namespace eigentone_plugin {

struct BundleEntry {
    std::string name;   // shown in the host: the file name without ".etone" (+ " (user)" if it shadows a shipped one)
    std::string path;   // the .etone file (or folder)
};

// $XDG_DATA_HOME/eigentone (or ~/.local/share/eigentone when XDG_DATA_HOME is unset or not absolute).
std::string data_dir();
std::string shipped_dir();   // data_dir() + "/shipped": replaced by every `bash run.sh plugin`
std::string user_dir();      // data_dir() + "/instruments": `eigentone install` copies bundles here

// Every *.etone in shipped_dir() then user_dir(), each folder sorted by name; at most `limit` entries
// (hosts show the list as an enumeration). Missing folders are skipped. Reads directory entries only.
std::vector<BundleEntry> scan_instruments(size_t limit = 255);

// One line "eigentone: <message>" in the host's log (stderr, for every host we know). Not for the audio thread.
void log_line(const std::string& message);

}  // namespace eigentone_plugin
