// SHA-256 (FIPS 180-4) of a byte buffer, as lowercase hex: the digests bundle manifests store per graph.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace eigentone {

std::string sha256_hex(const uint8_t* data, size_t size);

}  // namespace eigentone
