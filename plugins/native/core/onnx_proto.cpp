#include "onnx_proto.hpp"

#include <cstring>

namespace eigentone {
namespace onnx {
namespace {

constexpr size_t kMaxElements = size_t(1) << 26;   // per tensor (256 MB of float32)
constexpr size_t kMaxRank = 16;

enum Wire { VARINT = 0, FIXED64 = 1, BYTES = 2, FIXED32 = 5 };

struct Reader {
    const uint8_t* p;
    const uint8_t* end;
    std::string* error;

    bool fail(const char* what) {
        if (error->empty()) *error = what;
        return false;
    }
    bool done() const { return p >= end; }
    bool varint(uint64_t& out) {
        out = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) return fail("truncated varint");
            uint8_t byte = *p++;
            out |= uint64_t(byte & 0x7F) << shift;
            if (!(byte & 0x80)) return true;
        }
        return fail("varint too long");
    }
    bool tag(uint32_t& field, uint32_t& wire) {
        uint64_t key;
        if (!varint(key)) return false;
        field = uint32_t(key >> 3);
        wire = uint32_t(key & 7);
        if (field == 0) return fail("field number 0");
        return true;
    }
    bool bytes(const uint8_t*& data, size_t& size) {
        uint64_t n;
        if (!varint(n)) return false;
        if (n > uint64_t(end - p)) return fail("truncated length-delimited field");
        data = p;
        size = size_t(n);
        p += n;
        return true;
    }
    bool string(std::string& out) {
        const uint8_t* data;
        size_t size;
        if (!bytes(data, size)) return false;
        out.assign(reinterpret_cast<const char*>(data), size);
        return true;
    }
    bool fixed32(uint32_t& out) {
        if (end - p < 4) return fail("truncated fixed32");
        out = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        p += 4;
        return true;
    }
    bool skip(uint32_t wire) {
        uint64_t v;
        const uint8_t* d;
        size_t n;
        switch (wire) {
            case VARINT: return varint(v);
            case FIXED64:
                if (end - p < 8) return fail("truncated fixed64");
                p += 8;
                return true;
            case BYTES: return bytes(d, n);
            case FIXED32:
                if (end - p < 4) return fail("truncated fixed32");
                p += 4;
                return true;
            default: return fail("unsupported protobuf wire type (groups)");
        }
    }
    Reader sub(const uint8_t* data, size_t size) const { return Reader{data, data + size, error}; }
};

float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Repeated int64 (varint), packed or not.
bool read_ints(Reader& r, uint32_t wire, std::vector<int64_t>& out) {
    if (wire == VARINT) {
        uint64_t v;
        if (!r.varint(v)) return false;
        out.push_back(int64_t(v));
        return out.size() <= kMaxElements || r.fail("too many values");
    }
    if (wire != BYTES) return r.fail("bad wire type for repeated integers");
    const uint8_t* data;
    size_t size;
    if (!r.bytes(data, size)) return false;
    Reader packed = r.sub(data, size);
    while (!packed.done()) {
        uint64_t v;
        if (!packed.varint(v)) return false;
        out.push_back(int64_t(v));
        if (out.size() > kMaxElements) return r.fail("too many values");
    }
    return true;
}

// Repeated float (fixed32), packed or not.
bool read_floats(Reader& r, uint32_t wire, std::vector<float>& out) {
    if (wire == FIXED32) {
        uint32_t bits;
        if (!r.fixed32(bits)) return false;
        out.push_back(bits_to_float(bits));
        return out.size() <= kMaxElements || r.fail("too many values");
    }
    if (wire != BYTES) return r.fail("bad wire type for repeated floats");
    const uint8_t* data;
    size_t size;
    if (!r.bytes(data, size)) return false;
    if (size % 4) return r.fail("packed floats of odd length");
    if (out.size() + size / 4 > kMaxElements) return r.fail("too many values");
    for (size_t k = 0; k < size; k += 4)
        out.push_back(bits_to_float(uint32_t(data[k]) | uint32_t(data[k + 1]) << 8 | uint32_t(data[k + 2]) << 16 |
                                    uint32_t(data[k + 3]) << 24));
    return true;
}

bool read_tensor(Reader r, Tensor& t) {
    const uint8_t* raw = nullptr;
    size_t raw_size = 0;
    bool has_raw = false;
    std::vector<int64_t> int32_data;
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        uint64_t v;
        switch (field) {
            case 1: if (!read_ints(r, wire, t.dims)) return false; break;
            case 2: if (wire != VARINT || !r.varint(v)) return r.fail("bad tensor data_type"); t.data_type = int32_t(v); break;
            case 4: if (!read_floats(r, wire, t.floats)) return false; break;
            case 5: if (!read_ints(r, wire, int32_data)) return false; break;
            case 7: if (!read_ints(r, wire, t.ints)) return false; break;
            case 8: if (wire != BYTES || !r.string(t.name)) return r.fail("bad tensor name"); break;
            case 9: if (wire != BYTES || !r.bytes(raw, raw_size)) return r.fail("bad tensor raw_data"); has_raw = true; break;
            case 14: if (wire != VARINT || !r.varint(v)) return r.fail("bad tensor data_location"); t.external = v == 1; break;
            case 13: t.external = true; if (!r.skip(wire)) return false; break;
            default: if (!r.skip(wire)) return false;
        }
    }
    if (t.dims.size() > kMaxRank) return r.fail("tensor rank too large");
    size_t count = 1;
    for (int64_t d : t.dims) {
        if (d < 0) return r.fail("negative tensor dimension");
        if (d > 0 && count > kMaxElements / size_t(d)) return r.fail("tensor too large");
        count *= size_t(d);
    }
    if (count > kMaxElements) return r.fail("tensor too large");
    if (t.external) return true;
    switch (t.data_type) {
        case FLOAT:
            if (has_raw) {
                if (raw_size != 4 * count) return r.fail("raw_data size does not match the tensor's dims");
                t.floats.resize(count);
                std::memcpy(t.floats.data(), raw, raw_size);   // little-endian host (x86-64, aarch64)
            } else if (t.floats.size() != count) {
                return r.fail("float_data size does not match the tensor's dims");
            }
            break;
        case INT64:
            if (has_raw) {
                if (raw_size != 8 * count) return r.fail("raw_data size does not match the tensor's dims");
                t.ints.resize(count);
                std::memcpy(t.ints.data(), raw, raw_size);
            } else if (t.ints.size() != count) {
                return r.fail("int64_data size does not match the tensor's dims");
            }
            break;
        case INT32:
        case BOOL: {
            size_t width = t.data_type == BOOL ? 1 : 4;
            if (has_raw) {
                if (raw_size != width * count) return r.fail("raw_data size does not match the tensor's dims");
                t.ints.resize(count);
                for (size_t k = 0; k < count; ++k) {
                    if (width == 1) {
                        t.ints[k] = raw[k] != 0;
                    } else {
                        int32_t v;
                        std::memcpy(&v, raw + 4 * k, 4);
                        t.ints[k] = v;
                    }
                }
            } else {
                if (int32_data.size() != count) return r.fail("int32_data size does not match the tensor's dims");
                t.ints.resize(count);
                for (size_t k = 0; k < count; ++k)
                    t.ints[k] = t.data_type == BOOL ? int64_t(int32_data[k] != 0) : int64_t(int32_t(int32_data[k]));
            }
            break;
        }
        default: break;   // other types keep no data; the evaluator refuses them
    }
    return true;
}

bool read_dim(Reader r, Dim& d) {
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        uint64_t v;
        if (field == 1 && wire == VARINT) {
            if (!r.varint(v)) return false;
            d.has_value = true;
            d.value = int64_t(v);
        } else if (field == 2 && wire == BYTES) {
            if (!r.string(d.param)) return false;
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    return true;
}

bool read_shape(Reader r, ValueInfo& info) {
    info.has_shape = true;
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        if (field == 1 && wire == BYTES) {
            const uint8_t* data;
            size_t size;
            if (!r.bytes(data, size)) return false;
            info.dims.emplace_back();
            if (info.dims.size() > kMaxRank) return r.fail("shape rank too large");
            if (!read_dim(r.sub(data, size), info.dims.back())) return false;
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    return true;
}

bool read_tensor_type(Reader r, ValueInfo& info) {
    info.is_tensor = true;
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        uint64_t v;
        if (field == 1 && wire == VARINT) {
            if (!r.varint(v)) return false;
            info.elem_type = int32_t(v);
        } else if (field == 2 && wire == BYTES) {
            const uint8_t* data;
            size_t size;
            if (!r.bytes(data, size) || !read_shape(r.sub(data, size), info)) return false;
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    return true;
}

bool read_value_info(Reader r, ValueInfo& info) {
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        if (field == 1 && wire == BYTES) {
            if (!r.string(info.name)) return false;
        } else if (field == 2 && wire == BYTES) {
            const uint8_t* data;
            size_t size;
            if (!r.bytes(data, size)) return false;
            Reader type = r.sub(data, size);
            while (!type.done()) {   // TypeProto: only tensor_type (1) is understood
                uint32_t f, w;
                if (!type.tag(f, w)) return false;
                if (f == 1 && w == BYTES) {
                    const uint8_t* d;
                    size_t n;
                    if (!type.bytes(d, n) || !read_tensor_type(type.sub(d, n), info)) return false;
                } else if (!type.skip(w)) {
                    return false;
                }
            }
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    return true;
}

bool read_attribute(Reader r, Attribute& a) {
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        uint64_t v;
        uint32_t bits;
        const uint8_t* data;
        size_t size;
        switch (field) {
            case 1: if (wire != BYTES || !r.string(a.name)) return r.fail("bad attribute name"); break;
            case 20: if (wire != VARINT || !r.varint(v)) return r.fail("bad attribute type"); a.type = int32_t(v); break;
            case 2: if (wire != FIXED32 || !r.fixed32(bits)) return r.fail("bad attribute float"); a.f = bits_to_float(bits); break;
            case 3: if (wire != VARINT || !r.varint(v)) return r.fail("bad attribute int"); a.i = int64_t(v); break;
            case 4: if (wire != BYTES || !r.string(a.s)) return r.fail("bad attribute string"); break;
            case 5:
                if (wire != BYTES || !r.bytes(data, size)) return r.fail("bad attribute tensor");
                a.t.emplace_back();
                if (!read_tensor(r.sub(data, size), a.t.back())) return false;
                break;
            case 6: case 11: a.has_graph = true; if (!r.skip(wire)) return false; break;
            case 7: if (!read_floats(r, wire, a.floats)) return false; break;
            case 8: if (!read_ints(r, wire, a.ints)) return false; break;
            default: if (!r.skip(wire)) return false;
        }
    }
    return true;
}

bool read_node(Reader r, Node& n) {
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        const uint8_t* data;
        size_t size;
        switch (field) {
            case 1: n.inputs.emplace_back(); if (wire != BYTES || !r.string(n.inputs.back())) return r.fail("bad node input"); break;
            case 2: n.outputs.emplace_back(); if (wire != BYTES || !r.string(n.outputs.back())) return r.fail("bad node output"); break;
            case 3: if (wire != BYTES || !r.string(n.name)) return r.fail("bad node name"); break;
            case 4: if (wire != BYTES || !r.string(n.op_type)) return r.fail("bad node op_type"); break;
            case 7: if (wire != BYTES || !r.string(n.domain)) return r.fail("bad node domain"); break;
            case 5:
                if (wire != BYTES || !r.bytes(data, size)) return r.fail("bad node attribute");
                n.attributes.emplace_back();
                if (!read_attribute(r.sub(data, size), n.attributes.back())) return false;
                break;
            default: if (!r.skip(wire)) return false;
        }
    }
    return true;
}

bool read_graph(Reader r, Graph& g) {
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        if (wire != BYTES) {
            if (!r.skip(wire)) return false;
            continue;
        }
        const uint8_t* data;
        size_t size;
        if (!r.bytes(data, size)) return false;
        Reader sub = r.sub(data, size);
        switch (field) {
            case 1: g.nodes.emplace_back(); if (!read_node(sub, g.nodes.back())) return false; break;
            case 5: g.initializers.emplace_back(); if (!read_tensor(sub, g.initializers.back())) return false; break;
            case 15: ++g.sparse_initializers; break;
            case 11: g.inputs.emplace_back(); if (!read_value_info(sub, g.inputs.back())) return false; break;
            case 12: g.outputs.emplace_back(); if (!read_value_info(sub, g.outputs.back())) return false; break;
            case 13: g.value_info.emplace_back(); if (!read_value_info(sub, g.value_info.back())) return false; break;
            default: break;
        }
        if (g.nodes.size() > 200000) return r.fail("too many nodes");
    }
    return true;
}

}  // namespace

const Attribute* Node::attribute(const std::string& attribute_name) const {
    for (const Attribute& a : attributes)
        if (a.name == attribute_name) return &a;
    return nullptr;
}

int64_t Model::opset(const std::string& domain) const {
    for (const OpsetId& o : opsets)
        if (o.domain == domain || (domain.empty() && o.domain == "ai.onnx")) return o.version;
    return -1;
}

bool decode_model(const uint8_t* data, size_t size, Model& model, std::string& error) {
    error.clear();
    Reader r{data, data + size, &error};
    bool has_graph = false;
    while (!r.done()) {
        uint32_t field, wire;
        if (!r.tag(field, wire)) return false;
        uint64_t v;
        if (field == 1 && wire == VARINT) {
            if (!r.varint(v)) return false;
            model.ir_version = int64_t(v);
        } else if (field == 7 && wire == BYTES) {
            const uint8_t* d;
            size_t n;
            if (!r.bytes(d, n)) return false;
            if (!read_graph(r.sub(d, n), model.graph)) return false;
            has_graph = true;
        } else if (field == 8 && wire == BYTES) {
            const uint8_t* d;
            size_t n;
            if (!r.bytes(d, n)) return false;
            Reader o = r.sub(d, n);
            OpsetId id;
            while (!o.done()) {
                uint32_t f, w;
                if (!o.tag(f, w)) return false;
                if (f == 1 && w == BYTES) {
                    if (!o.string(id.domain)) return false;
                } else if (f == 2 && w == VARINT) {
                    if (!o.varint(v)) return false;
                    id.version = int64_t(v);
                } else if (!o.skip(w)) {
                    return false;
                }
            }
            model.opsets.push_back(id);
        } else if (field == 25 && wire == BYTES) {
            ++model.functions;
            if (!r.skip(wire)) return false;
        } else if (!r.skip(wire)) {
            return false;
        }
    }
    if (!has_graph) {
        error = "no graph in the model";
        return false;
    }
    return true;
}

}  // namespace onnx
}  // namespace eigentone
