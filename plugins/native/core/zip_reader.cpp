#include "zip_reader.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace eigentone {
namespace {

uint16_t u16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t u32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

bool unsafe_name(const std::string& name) {
    if (name.empty() || name[0] == '/' || name[0] == '\\' || name.find('\\') != std::string::npos) return true;
    if (name.size() > 1 && name[1] == ':') return true;   // "C:..."
    size_t start = 0;
    while (start <= name.size()) {
        size_t end = name.find('/', start);
        if (end == std::string::npos) end = name.size();
        if (name.compare(start, end - start, "..") == 0 && end - start == 2) return true;
        start = end + 1;
    }
    return false;
}

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
    if (!ended && status == Z_BUF_ERROR && stream.avail_out == 0) {   // more data than declared?
        uint8_t probe[1];
        stream.next_out = probe;
        stream.avail_out = 1;
        status = inflate(&stream, Z_FINISH);
        inflateEnd(&stream);
        error = status == Z_STREAM_END && stream.avail_out == 1 ? "deflate stream did not end" : "member is larger than its declared size";
        return false;
    }
    inflateEnd(&stream);
    if (!ended) {
        error = stream.msg ? std::string("corrupted deflate data (") + stream.msg + ")" : "corrupted or truncated deflate data";
        return false;
    }
    if (produced != expected) {
        error = "member is smaller than its declared size";
        return false;
    }
    return true;
}

}  // namespace

bool read_file(const std::string& path, std::vector<uint8_t>& bytes, std::string& error) {
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
        if (bytes.size() > kMaxTotalBytes) {
            std::fclose(f);
            error = "file larger than " + std::to_string(kMaxTotalBytes >> 20) + " MB";
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

bool read_zip(const std::vector<uint8_t>& archive, BundleFiles& files, std::string& error) {
    const uint8_t* base = archive.data();
    size_t size = archive.size();
    if (size < 22) {
        error = "too short to be a zip archive";
        return false;
    }
    // End of central directory: the last "PK\5\6" within the final 64 kB + 22 bytes.
    size_t eocd = size_t(-1);
    size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (size_t k = size - 22 + 1; k-- > lowest;) {
        if (u32(base + k) == 0x06054b50) {
            eocd = k;
            break;
        }
    }
    if (eocd == size_t(-1)) {
        error = "no zip end-of-central-directory record";
        return false;
    }
    const uint8_t* e = base + eocd;
    if (u16(e + 4) != 0 || u16(e + 6) != 0) {
        error = "multi-disk zip archives are not supported";
        return false;
    }
    size_t entries = u16(e + 10);
    uint64_t cd_size = u32(e + 12), cd_offset = u32(e + 16);
    if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
        error = "zip64 archives are not supported";
        return false;
    }
    if (entries > kMaxMembers) {
        error = "more than " + std::to_string(kMaxMembers) + " members";
        return false;
    }
    if (cd_offset + cd_size > eocd) {
        error = "central directory outside the archive";
        return false;
    }
    uint64_t total = 0;
    size_t pos = size_t(cd_offset);
    for (size_t n = 0; n < entries; ++n) {
        if (pos + 46 > eocd || u32(base + pos) != 0x02014b50) {
            error = "corrupted central directory";
            return false;
        }
        const uint8_t* c = base + pos;
        uint16_t flags = u16(c + 8), method = u16(c + 10);
        uint32_t crc = u32(c + 16);
        uint64_t packed = u32(c + 20), unpacked = u32(c + 24);
        size_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
        uint64_t local = u32(c + 42);
        if (pos + 46 + name_len + extra_len + comment_len > eocd) {
            error = "corrupted central directory";
            return false;
        }
        std::string name(reinterpret_cast<const char*>(c + 46), name_len);
        pos += 46 + name_len + extra_len + comment_len;
        if (packed == 0xFFFFFFFFu || unpacked == 0xFFFFFFFFu || local == 0xFFFFFFFFu) {
            error = "zip64 archives are not supported";
            return false;
        }
        if (unsafe_name(name)) {
            error = "member name '" + name + "' is absolute or leaves the bundle";
            return false;
        }
        if (name.back() == '/') continue;   // a directory entry
        if (flags & 1) {
            error = "member '" + name + "' is encrypted";
            return false;
        }
        if (method != 0 && method != 8) {
            error = "member '" + name + "' uses compression method " + std::to_string(method) + " (only stored and deflate)";
            return false;
        }
        if (unpacked > kMaxMemberBytes) {
            error = "member '" + name + "' is larger than " + std::to_string(kMaxMemberBytes >> 20) + " MB";
            return false;
        }
        total += unpacked;
        if (total > kMaxTotalBytes) {
            error = "members total more than " + std::to_string(kMaxTotalBytes >> 20) + " MB";
            return false;
        }
        if (local + 30 > size || u32(base + local) != 0x04034b50) {
            error = "bad local header for member '" + name + "'";
            return false;
        }
        const uint8_t* h = base + local;
        size_t local_name = u16(h + 26), local_extra = u16(h + 28);
        if (local_name != name_len || std::memcmp(h + 30, name.data(), name_len) != 0) {
            error = "member '" + name + "': local header name differs from the central directory";
            return false;
        }
        uint64_t data_start = local + 30 + local_name + local_extra;
        if (data_start + packed > size) {
            error = "member '" + name + "' is truncated";
            return false;
        }
        std::vector<uint8_t> data;
        if (method == 0) {
            if (packed != unpacked) {
                error = "stored member '" + name + "' has different packed and unpacked sizes";
                return false;
            }
            data.assign(base + data_start, base + data_start + packed);
        } else {
            std::string why;
            if (!inflate_raw(base + data_start, size_t(packed), data, size_t(unpacked), why)) {
                error = "member '" + name + "': " + why;
                return false;
            }
        }
        uint32_t actual = uint32_t(crc32(0L, data.empty() ? Z_NULL : data.data(), uInt(data.size())));
        if (actual != crc) {
            error = "CRC mismatch in member '" + name + "'";
            return false;
        }
        files[name] = std::move(data);
    }
    return true;
}

bool read_folder(const std::string& path, BundleFiles& files, std::string& error) {
    DIR* dir = opendir(path.c_str());
    if (!dir) {
        error = std::strerror(errno);
        return false;
    }
    uint64_t total = 0;
    while (dirent* entry = readdir(dir)) {
        std::string name = entry->d_name;
        if (name == "." || name == "..") continue;
        std::string full = path + "/" + name;
        struct stat st;
        if (stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (uint64_t(st.st_size) > kMaxMemberBytes || (total += uint64_t(st.st_size)) > kMaxTotalBytes) {
            closedir(dir);
            error = "file '" + name + "' makes the bundle larger than the size limit";
            return false;
        }
        std::vector<uint8_t> bytes;
        std::string why;
        if (!read_file(full, bytes, why)) {
            closedir(dir);
            error = "cannot read '" + name + "' (" + why + ")";
            return false;
        }
        files[name] = std::move(bytes);
        if (files.size() > kMaxMembers) {
            closedir(dir);
            error = "more than " + std::to_string(kMaxMembers) + " files";
            return false;
        }
    }
    closedir(dir);
    return true;
}

}  // namespace eigentone
