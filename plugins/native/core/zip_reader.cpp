#include "zip_reader.hpp"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace eigentone {
namespace {

uint16_t u16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t u32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

bool inflate_raw(const uint8_t* data, size_t size, std::vector<uint8_t>& out, size_t expected, std::string& error) {
    out.resize(expected);
    z_stream stream;
    std::memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) {
        error = "zlib could not start inflating";
        return false;
    }
    stream.next_in = const_cast<Bytef*>(data);
    stream.avail_in = uInt(size);
    uint8_t spare;
    stream.next_out = expected ? out.data() : &spare;
    stream.avail_out = uInt(expected);
    int status = inflate(&stream, Z_FINISH);
    bool ended = status == Z_STREAM_END;
    size_t produced = expected - stream.avail_out;
    std::string message = stream.msg ? stream.msg : "";
    inflateEnd(&stream);
    if (!ended) {
        error = stream.avail_out == 0 && status == Z_BUF_ERROR ? "holds more bytes than its size in the archive"
                : message.empty()                             ? "corrupted or truncated deflate data"
                                                              : "corrupted deflate data (" + message + ")";
        return false;
    }
    if (produced != expected) {
        error = "holds fewer bytes than its size in the archive";
        return false;
    }
    return true;
}

}  // namespace

bool read_file(const std::string& path, std::vector<uint8_t>& bytes, uint64_t max_bytes, std::string& error) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        error = std::strerror(errno);
        return false;
    }
    bytes.clear();
    uint8_t buffer[65536];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) {
        bytes.insert(bytes.end(), buffer, buffer + n);
        if (bytes.size() > max_bytes) {
            std::fclose(f);
            error = "file larger than " + std::to_string(max_bytes >> 20) + " MB";
            return false;
        }
    }
    bool failed = std::ferror(f);
    std::fclose(f);
    if (failed) {
        error = "read error";
        return false;
    }
    return true;
}

bool BundleMembers::open(const std::string& path, bool folder, uint64_t max_archive_bytes, std::string& error) {
    path_ = path;
    folder_ = folder;
    if (folder) return true;
    if (!read_file(path, archive_, max_archive_bytes, error)) return false;
    const uint8_t* base = archive_.data();
    size_t size = archive_.size();
    // End of central directory: the last "PK\5\6" within the final 64 kB + 22 bytes.
    size_t eocd = size_t(-1);
    if (size >= 22) {
        size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
        for (size_t k = size - 22 + 1; k-- > lowest;)
            if (u32(base + k) == 0x06054b50) {
                eocd = k;
                break;
            }
    }
    if (eocd == size_t(-1)) {
        error = "File is not a zip file";
        return false;
    }
    const uint8_t* e = base + eocd;
    size_t entries = u16(e + 10);
    uint64_t cd_size = u32(e + 12), cd_offset = u32(e + 16);
    if (entries > kMaxMembers || cd_size > 65536ull * kMaxMembers) {
        error = "@the archive lists " + std::to_string(entries) + " entries (" + std::to_string(cd_size) +
                " bytes of directory); a bundle has at most " + std::to_string(kMaxMembers);
        return false;
    }
    if (u16(e + 4) != 0 || u16(e + 6) != 0) {
        error = "multi-disk zip archives are not supported";
        return false;
    }
    if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
        error = "zip64 archives are not supported";
        return false;
    }
    if (cd_offset + cd_size > eocd) {
        error = "central directory outside the archive";
        return false;
    }
    size_t pos = size_t(cd_offset);
    std::vector<std::string> names;
    for (size_t n = 0; n < entries; ++n) {
        if (pos + 46 > eocd || u32(base + pos) != 0x02014b50) {
            error = "Bad magic number for central directory";
            return false;
        }
        const uint8_t* c = base + pos;
        Entry entry{u16(c + 8), u16(c + 10), u32(c + 16), u32(c + 20), u32(c + 24), u32(c + 42)};
        size_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
        if (pos + 46 + name_len + extra_len + comment_len > eocd) {
            error = "truncated central directory";
            return false;
        }
        std::string name(reinterpret_cast<const char*>(c + 46), name_len);
        pos += 46 + name_len + extra_len + comment_len;
        if (entry.packed == 0xFFFFFFFFu || entry.unpacked == 0xFFFFFFFFu || entry.local == 0xFFFFFFFFu) {
            error = "zip64 archives are not supported";
            return false;
        }
        entries_[name] = entry;   // a repeated name keeps the last entry, as Python's zipfile does
        names.push_back(name);
    }
    // Never read, but an archive that holds them is not an honest bundle (engine/bundle.py refuses it too).
    for (const std::string& name : names) {
        std::string slashed = name;
        for (char& ch : slashed)
            if (ch == '\\') ch = '/';
        bool outside = !name.empty() && (name[0] == '/' || name[0] == '\\');
        size_t start = 0;
        while (!outside && start <= slashed.size()) {
            size_t end = slashed.find('/', start);
            if (end == std::string::npos) end = slashed.size();
            outside = slashed.compare(start, end - start, "..") == 0 && end - start == 2;
            start = end + 1;
        }
        if (outside) {
            error = "@archive entry '" + name + "' points outside the bundle";
            return false;
        }
    }
    return true;
}

int64_t BundleMembers::size(const std::string& name) const {
    if (folder_) {
        struct stat st;
        std::string full = path_ + "/" + name;
        if (stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
        return int64_t(st.st_size);
    }
    auto it = entries_.find(name);
    if (it == entries_.end() || name.empty() || name.back() == '/') return -1;
    return int64_t(it->second.unpacked);
}

BundleMembers::Status BundleMembers::read(const std::string& name, uint64_t cap, std::vector<uint8_t>& out,
                                          std::string& error) const {
    int64_t declared = size(name);
    if (declared < 0) return Status::Missing;
    if (uint64_t(declared) > cap) return Status::TooLarge;
    if (folder_) {
        std::string full = path_ + "/" + name;
        char resolved[PATH_MAX], folder[PATH_MAX];
        if (!realpath(full.c_str(), resolved) || !realpath(path_.c_str(), folder)) {
            error = std::strerror(errno);
            return Status::Corrupt;
        }
        std::string parent = resolved;
        parent = parent.substr(0, parent.rfind('/'));
        if (parent != folder) return Status::Outside;
        std::string why;
        if (!read_file(full, out, cap, why)) {
            error = why;
            return Status::Corrupt;
        }
        return Status::Ok;
    }
    const Entry& entry = entries_.at(name);
    const uint8_t* base = archive_.data();
    size_t total = archive_.size();
    if (entry.flags & 1) {
        error = "encrypted member";
        return Status::Corrupt;
    }
    if (entry.method != 0 && entry.method != 8) {
        error = "compression method " + std::to_string(entry.method) + " (only stored and deflate)";
        return Status::Corrupt;
    }
    if (entry.local + 30 > total || u32(base + entry.local) != 0x04034b50) {
        error = "Bad magic number for file header";
        return Status::Corrupt;
    }
    const uint8_t* h = base + entry.local;
    size_t local_name = u16(h + 26), local_extra = u16(h + 28);
    if (entry.local + 30 + local_name > total || local_name != name.size() ||
        std::memcmp(h + 30, name.data(), local_name) != 0) {
        error = "File name in directory and header differ";
        return Status::Corrupt;
    }
    uint64_t start = entry.local + 30 + local_name + local_extra;
    if (start + entry.packed > total) {
        error = "truncated member data";
        return Status::Corrupt;
    }
    if (entry.method == 0) {
        if (entry.packed != entry.unpacked) {
            error = "stored member with different packed and unpacked sizes";
            return Status::Corrupt;
        }
        out.assign(base + start, base + start + entry.packed);
    } else if (!inflate_raw(base + start, size_t(entry.packed), out, size_t(entry.unpacked), error)) {
        return Status::Corrupt;
    }
    if (uint32_t(crc32(0L, out.empty() ? Z_NULL : out.data(), uInt(out.size()))) != entry.crc) {
        error = "Bad CRC-32 for file '" + name + "'";
        return Status::Corrupt;
    }
    return Status::Ok;
}

}  // namespace eigentone
