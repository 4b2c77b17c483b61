// Reading a bundle's files: a .etone zip archive (central directory, stored or deflated members, CRC-32
// checked) or a folder (its top-level regular files). Refuses encrypted, split or zip64 archives, member
// names that are absolute or climb out with "..", and members or totals beyond the size limits below.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace eigentone {

using BundleFiles = std::map<std::string, std::vector<uint8_t>>;

constexpr uint64_t kMaxMemberBytes = 256ull << 20;   // one uncompressed member
constexpr uint64_t kMaxTotalBytes = 512ull << 20;    // all members together
constexpr size_t kMaxMembers = 1024;

// Read the whole file into `bytes`; false + error (no path prefix) on failure.
bool read_file(const std::string& path, std::vector<uint8_t>& bytes, std::string& error);

// Files of a zip archive held in memory, name -> bytes (directories skipped; a repeated name keeps the
// last copy, as Python's zipfile does). False + a short reason on any problem.
bool read_zip(const std::vector<uint8_t>& archive, BundleFiles& files, std::string& error);

// Top-level regular files of a folder.
bool read_folder(const std::string& path, BundleFiles& files, std::string& error);

}  // namespace eigentone
