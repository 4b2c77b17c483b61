// Reading a bundle's files the way engine/bundle.py does: a .etone zip archive (central directory, stored or
// deflated members, CRC-32 checked) or a folder, one named member at a time. Only the members the manifest
// names are ever read, each within a size cap checked before and while reading; a member name must be a plain
// top-level file name (checked by the caller), so nothing outside the bundle is ever read.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace eigentone {

constexpr size_t kMaxMembers = 1000;   // entries an archive may list (a real bundle has 2-5)

class BundleMembers {
public:
    // Open a zip archive (its bytes are read whole, at most max_archive_bytes) or a folder. False + error.
    bool open(const std::string& path, bool folder, uint64_t max_archive_bytes, std::string& error);
    // Declared uncompressed size of a top-level member, or -1 if absent (directories count as absent).
    int64_t size(const std::string& name) const;
    // The member's bytes, at most cap bytes. False + error: "missing", "above cap", or a reason.
    enum class Status { Ok, Missing, TooLarge, Corrupt, Outside };
    Status read(const std::string& name, uint64_t cap, std::vector<uint8_t>& out, std::string& error) const;
    const std::vector<uint8_t>& archive() const { return archive_; }

private:
    struct Entry {
        uint16_t flags, method;
        uint32_t crc;
        uint64_t packed, unpacked, local;
    };
    bool folder_ = false;
    std::string path_;
    std::vector<uint8_t> archive_;
    std::map<std::string, Entry> entries_;
};

bool read_file(const std::string& path, std::vector<uint8_t>& bytes, uint64_t max_bytes, std::string& error);

}  // namespace eigentone
