// Loading a bundle: the same checks, in the same order and with the same messages where they apply, as
// engine/bundle.py (_read_files, _check_manifest, _check_graph, _probe), then the level gain of
// engine/instrument.py. The one extra rule: every graph must stay inside the evaluator's op subset.
#include "instrument.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <complex>
#include <nlohmann/json.hpp>

#include "onnx_proto.hpp"
#include "sha256.hpp"
#include "zip_reader.hpp"

namespace eigentone {
namespace {

using Json = nlohmann::ordered_json;

const char* kControlNames[4] = {"note", "velocity", "position", "position_y"};
const double kDefaultControls[4] = {60.0, 0.8, 0.2, 0.37};
constexpr double kLevel = 0.25;
constexpr int64_t kMaxModes = 4096;                     // eigentone/limits.py "modes"
constexpr uint64_t kManifestCap = 1024 * 1024;          // "manifest-kb" 1024
constexpr uint64_t kGraphCap = 256000000;               // "bundle-member-mb" 256 (MB of 1e6 bytes)
constexpr uint64_t kArchiveCap = uint64_t(1) << 31;

struct Failure {
    std::string message;
};

[[noreturn]] void refuse(const std::string& path, const std::string& problem) { throw Failure{path + ": " + problem}; }

std::string python_type(const Json& v) {
    switch (v.type()) {
        case Json::value_t::string: return "str";
        case Json::value_t::boolean: return "bool";
        case Json::value_t::number_integer:
        case Json::value_t::number_unsigned: return "int";
        case Json::value_t::number_float: return "float";
        case Json::value_t::array: return "list";
        case Json::value_t::object: return "dict";
        default: return "NoneType";
    }
}

std::string python_repr(const Json& v) {
    if (v.is_string()) return "'" + v.get<std::string>() + "'";
    if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
    if (v.is_null()) return "None";
    return v.dump();
}

// Python's repr of a sorted list of names: ['a', 'b'].
std::string name_list(std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    std::string out = "[";
    for (size_t k = 0; k < names.size(); ++k) out += (k ? ", '" : "'") + names[k] + "'";
    return out + "]";
}

std::string shape_repr(const Json& shape) {
    if (!shape.is_array()) return python_repr(shape);
    std::string out = "[";
    for (size_t k = 0; k < shape.size(); ++k) out += (k ? ", " : "") + python_repr(shape[k]);
    return out + "]";
}

bool is_int(const Json& v) { return v.is_number_integer(); }   // JSON booleans are not numbers here

size_t utf8_length(const std::string& text) {
    size_t n = 0;
    for (unsigned char ch : text) n += (ch & 0xC0) != 0x80;
    return n;
}

// Python's f"{x:,.0f}" for x >= 100 and f"{x:.3g}" below (eigentone/limits.py _amount).
std::string amount(double x) {
    char text[64];
    if (std::fabs(x) < 100) {
        std::snprintf(text, sizeof(text), "%.3g", x);
        return text;
    }
    std::snprintf(text, sizeof(text), "%.0f", x);
    std::string digits = text, out;
    size_t first = digits[0] == '-' ? 1 : 0;
    for (size_t k = 0; k < digits.size(); ++k) {
        if (k > first && (digits.size() - k) % 3 == 0) out += ',';
        out += digits[k];
    }
    return out;
}

std::string number_repr(const Json& v) {
    if (v.is_number_float()) {   // Python's repr of a float: shortest round trip, with ".0" for whole numbers
        std::string text = v.dump();
        if (text.find_first_of(".eE") == std::string::npos && text.find("inf") == std::string::npos) text += ".0";
        return text;
    }
    return python_repr(v);
}

std::string bound(double x) {   // Python's f"{x:g}"
    char text[32];
    std::snprintf(text, sizeof(text), "%g", x);
    return text;
}

// eigentone.limits.finite_number: a finite number (not bool) in [low, high], whole when `integer`.
double finite_number(const std::string& what, const Json& v, double low, double high, bool integer = false) {
    std::string kind = integer ? "a whole number" : "a finite number";
    if (!v.is_number()) throw Failure{what + ": expected " + kind + ", got " + python_type(v)};
    double x = v.get<double>();
    if (integer && v.is_number_float() && x != std::floor(x)) throw Failure{what + ": expected " + kind + ", got " + number_repr(v)};
    if (!std::isfinite(x)) throw Failure{what + ": expected " + kind + ", got " + number_repr(v)};
    if (x < low || x > high)
        throw Failure{what + ": " + number_repr(v) + " is out of range (expected " + bound(low) + ".." + bound(high) + ")"};
    return x;
}

void check_numbers(const std::string& path, const Json& m) {
    std::string where = path + ": manifest";
    const Json& range = m["note_range"];
    if (range.size() != 2) refuse(path, "manifest 'note_range' must be [lowest, highest] MIDI notes");
    double lo = finite_number(where + " 'note_range'", range[0], 0, 127, true);
    double hi = finite_number(where + " 'note_range'", range[1], 0, 127, true);
    if (lo > hi) refuse(path, "manifest 'note_range' [" + bound(lo) + ", " + bound(hi) + "] is reversed (lowest note first)");
    finite_number(where + " 'trained_sample_rate'", m["trained_sample_rate"], 1.0, 10e6);
    finite_number(where + " 'release_time' (seconds)", m["release_time"], 1e-3, 600.0);
    if (m.contains("output_gain") && !m["output_gain"].is_null()) {
        double gain = finite_number(where + " 'output_gain'", m["output_gain"], 0.0, 1e9);
        if (gain <= 0)
            refuse(path, "manifest 'output_gain' must be > 0 (leave it out to let the engine level the instrument)");
    }
}

// A member name the manifest gives: a plain top-level file name (no folders, no "..", no control characters).
void plain_name(const std::string& path, const Json& name, const std::string& what) {
    bool ok = name.is_string();
    if (ok) {
        const std::string text = name.get<std::string>();
        ok = !text.empty() && utf8_length(text) <= 255 && text.find('/') == std::string::npos &&
             text.find('\\') == std::string::npos && text != "." && text != "..";
        for (unsigned char ch : text) ok = ok && ch >= 32;
    }
    if (!ok) refuse(path, what + " " + python_repr(name) + " is not a plain file name in the bundle");
}

void check_graph_entry(const std::string& path, const std::string& role, const Json& entry) {
    if (!entry.is_object() || !entry.contains("file") || !entry["file"].is_string() || !entry.contains("sha256") ||
        !entry["sha256"].is_string())
        refuse(path, "graph '" + role + "' needs 'file' and 'sha256' strings in manifest.json");
    plain_name(path, entry["file"], "graph '" + role + "' file");
    if (entry["file"] == "manifest.json") refuse(path, "graph '" + role + "' cannot be manifest.json");
    for (const char* kind : {"inputs", "outputs"}) {
        if (!entry.contains(kind) || !entry[kind].is_object())
            refuse(path, "graph '" + role + "' is missing its '" + kind + "' in manifest.json");
        for (auto it = entry[kind].begin(); it != entry[kind].end(); ++it) {
            const Json& shape = it.value();
            bool ok = shape.is_array() && shape.size() >= 1 && shape.size() <= 8;
            for (size_t k = 0; ok && k < shape.size(); ++k)
                ok = shape[k].is_string() || (is_int(shape[k]) && shape[k].get<int64_t>() >= 1);
            if (!ok)
                refuse(path, "graph '" + role + "' " + std::string(kind).substr(0, std::strlen(kind) - 1) + " " +
                                 python_repr(Json(it.key())) + " has shape " + shape_repr(shape) +
                                 "; a shape is a list of 1-8 sizes or axis names");
        }
    }
}

// The optional attack component: {"samples": L >= 1, "sample_rate": fs_a > 0}, at most 1 s long.
void check_attack(const std::string& path, const Json& attack) {
    if (!attack.is_object() || attack.size() != 2 || !attack.contains("samples") || !attack.contains("sample_rate"))
        refuse(path, "manifest 'attack' must be {\"samples\": L, \"sample_rate\": Hz}");
    const Json& samples = attack["samples"];
    const Json& rate = attack["sample_rate"];
    if (!is_int(samples) || samples.get<int64_t>() < 1) refuse(path, "manifest 'attack' 'samples' must be an integer >= 1");
    if (!rate.is_number() || !(rate.get<double>() > 0) || !std::isfinite(rate.get<double>()))
        refuse(path, "manifest 'attack' 'sample_rate' must be a number > 0 (Hz)");
    double seconds = double(samples.get<int64_t>()) / rate.get<double>();
    if (seconds > 1.0) {
        char text[64];
        std::snprintf(text, sizeof(text), "%.3g", seconds);
        refuse(path, std::string("manifest 'attack' lasts ") + text + " s, at most 1.0 s");
    }
}

void check_manifest(const std::string& path, const Json& m) {
    if (!m.is_object()) refuse(path, "manifest.json is not a JSON object");
    struct Key {
        const char* name;
        const char* kind;   // str, int, list, number, bool, dict
    };
    const Key keys[] = {{"format", "str"},      {"format_version", "int"}, {"name", "str"},
                        {"family", "str"},      {"modes", "int"},          {"controls", "list"},
                        {"note_range", "list"}, {"trained_sample_rate", "number"}, {"release_time", "number"},
                        {"modulation", "bool"}, {"graphs", "dict"}};
    for (const Key& key : keys) {
        if (!m.contains(key.name)) refuse(path, std::string("manifest.json is missing the required key '") + key.name + "'");
        const Json& v = m[key.name];
        std::string kind = key.kind;
        bool ok = kind == "str"      ? v.is_string()
                  : kind == "int"    ? is_int(v)
                  : kind == "list"   ? v.is_array()
                  : kind == "dict"   ? v.is_object()
                  : kind == "bool"   ? v.is_boolean()
                                     : (v.is_number() || v.is_boolean());   // Python: bool is an int
        if (!ok) refuse(path, std::string("manifest key '") + key.name + "' has the wrong type (" + python_type(v) + ")");
    }
    if (m["format"] != "eigentone-bundle")
        refuse(path, "manifest 'format' is " + python_repr(m["format"]) + ", expected 'eigentone-bundle'");
    if (m["format_version"] != 1)
        refuse(path, "bundle format_version " + m["format_version"].dump() +
                         " is not supported (this engine reads (1,)); update eigentone or re-export the model");
    // Any family: a lower-case identifier [a-z][a-z0-9_]{0,63} (the engine needs only the contract).
    const std::string family = m["family"].get<std::string>();
    bool identifier = !family.empty() && family.size() <= 64 && family[0] >= 'a' && family[0] <= 'z';
    for (char ch : family) identifier = identifier && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_');
    if (!identifier) refuse(path, "manifest 'family' must be a lower-case identifier, got " + python_repr(m["family"]));
    if (utf8_length(m["name"].get<std::string>()) < 1 || utf8_length(m["name"].get<std::string>()) > 200)
        refuse(path, "manifest 'name' must have 1 to 200 characters");
    if (m.contains("description") && !m["description"].is_string()) refuse(path, "manifest 'description' must be a string");
    int64_t modes = m["modes"].get<int64_t>();
    if (modes < 1) refuse(path, "manifest 'modes' must be >= 1");
    if (modes > kMaxModes)
        refuse(path, "manifest 'modes': " + amount(double(modes)) + " modes is above the limit of " + amount(kMaxModes) +
                         " modes (modes declared by a bundle; raise it with --limit modes=" + std::to_string(modes) + ")");
    const Json& controls = m["controls"];
    bool same = controls.size() == 4;
    for (size_t k = 0; same && k < 4; ++k) same = controls[k] == kControlNames[k];
    if (!same) refuse(path, "manifest 'controls' must be ['note', 'velocity', 'position', 'position_y']");
    check_numbers(path, m);
    const Json& graphs = m["graphs"];
    if (!graphs.contains("excite")) refuse(path, "manifest 'graphs' has no 'excite' graph");
    for (auto it = graphs.begin(); it != graphs.end(); ++it) {
        const std::string& role = it.key();
        if (role != "excite" && role != "readout" && role != "field")
            refuse(path, "unknown graph role " + python_repr(Json(role)) + " in manifest.json (expected excite, readout, field)");
        check_graph_entry(path, role, it.value());
    }
    if (m.contains("attack")) check_attack(path, m["attack"]);
}

// Shapes agree: equal rank, axis 0 dynamic, other axes equal where both are fixed numbers.
bool same_shape(const Json& declared, const std::vector<Json>& actual) {
    if (!declared.is_array() || declared.size() != actual.size()) return false;
    for (size_t k = 1; k < actual.size(); ++k)
        if (is_int(declared[k]) && is_int(actual[k]) && declared[k] != actual[k]) return false;
    return true;
}

std::vector<Json> dims_of(const onnx::ValueInfo& info) {
    std::vector<Json> dims;
    for (const onnx::Dim& d : info.dims) {
        if (d.has_value) dims.emplace_back(d.value);
        else if (!d.param.empty()) dims.emplace_back(d.param);
        else dims.emplace_back(nullptr);
    }
    return dims;
}

std::string ort_type(int32_t elem) {
    switch (elem) {
        case 1: return "tensor(float)";
        case 2: return "tensor(uint8)";
        case 3: return "tensor(int8)";
        case 6: return "tensor(int32)";
        case 7: return "tensor(int64)";
        case 9: return "tensor(bool)";
        case 10: return "tensor(float16)";
        case 11: return "tensor(double)";
        default: return "tensor(type " + std::to_string(elem) + ")";
    }
}

// The input/output shapes the format requires for a role; null shape entries mean "any".
Json expected_signature(const Json& m, const std::string& role) {
    int64_t n = m["modes"].get<int64_t>();
    Json sig = Json::object();
    if (role == "excite") {
        sig["inputs"] = {{"controls", {"voices", 4}}};
        Json outs = {{"sigma", {"voices", n}}, {"omega", {"voices", n}}, {"z0", {"voices", n, 2}}, {"c", {"voices", n, 2}}};
        if (m["modulation"].get<bool>()) {
            outs["mod_alpha"] = {"voices", n};
            outs["mod_beta"] = {"voices", n};
        }
        if (m.contains("attack")) outs["attack"] = {"voices", m["attack"]["samples"]};
        sig["outputs"] = outs;
    } else if (role == "readout") {
        sig["inputs"] = {{"z", {"voices", n, 2}}};
        sig["outputs"] = {{"c", {"voices", n, 2}}};
    } else {
        sig["inputs"] = {{"z", {"voices", n, 2}}};
        sig["outputs"] = Json::object();
    }
    return sig;
}

// One named member's bytes within `cap`, with engine/bundle.py's messages.
std::vector<uint8_t> read_member(const std::string& path, const BundleMembers& members, const std::string& name,
                                 uint64_t cap, const std::string& what) {
    std::vector<uint8_t> data;
    std::string why;
    char text[160];
    switch (members.read(name, cap, data, why)) {
        case BundleMembers::Status::Ok: return data;
        case BundleMembers::Status::Missing: refuse(path, "'" + name + "' named in manifest.json is missing from the bundle");
        case BundleMembers::Status::TooLarge:
            std::snprintf(text, sizeof(text), "' is %.1f MB, above the limit of %.1f MB (", double(members.size(name)) / 1e6,
                          double(cap) / 1e6);
            refuse(path, "'" + name + text + what + ")");
        case BundleMembers::Status::Outside: refuse(path, "'" + name + "' links outside the bundle folder");
        case BundleMembers::Status::Corrupt: break;
    }
    refuse(path, "corrupted bundle archive ('" + name + "': " + why + ")");
}

std::unique_ptr<Graph> check_graph(const std::string& path, const Json& m, const std::string& role,
                                   const BundleMembers& members) {
    const Json& entry = m["graphs"][role];
    std::string name = entry["file"].get<std::string>();
    std::vector<uint8_t> data = read_member(path, members, name, kGraphCap,
                                            "one graph file; raise it with --limit bundle-member-mb=512");
    std::string digest = sha256_hex(data.data(), data.size());
    std::string declared_digest = entry["sha256"].get<std::string>();
    std::string lower = declared_digest;
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (digest != lower)
        refuse(path, "sha256 mismatch for '" + name + "' (manifest " + declared_digest.substr(0, 12) + "..., file " +
                         digest.substr(0, 12) + "...); the bundle was changed after export");
    onnx::Model model;
    std::string problem;
    if (!onnx::decode_model(data.data(), data.size(), model, problem))
        refuse(path, "graph '" + name + "' does not load (" + problem + ")");
    Json expected = expected_signature(m, role);
    const std::vector<onnx::ValueInfo>* lists[2] = {&model.graph.inputs, &model.graph.outputs};
    const char* kinds[2] = {"inputs", "outputs"};
    for (int k = 0; k < 2; ++k) {
        std::string kind = kinds[k];
        std::string singular = kind.substr(0, kind.size() - 1);
        std::vector<const onnx::ValueInfo*> actual;
        std::vector<std::string> actual_names, declared_names;
        for (const onnx::ValueInfo& v : *lists[k]) {
            bool initializer = false;
            for (const onnx::Tensor& t : model.graph.initializers) initializer = initializer || t.name == v.name;
            if (k == 0 && initializer) continue;
            actual.push_back(&v);
            actual_names.push_back(v.name);
        }
        const Json& declared = entry[kind];
        for (auto it = declared.begin(); it != declared.end(); ++it) declared_names.push_back(it.key());
        std::vector<std::string> a = actual_names, d = declared_names;
        std::sort(a.begin(), a.end());
        std::sort(d.begin(), d.end());
        a.erase(std::unique(a.begin(), a.end()), a.end());
        d.erase(std::unique(d.begin(), d.end()), d.end());
        if (a != d)
            refuse(path, "graph '" + name + "' " + kind + " are " + name_list(a) + ", manifest.json declares " + name_list(d));
        for (auto it = expected[kind].begin(); it != expected[kind].end(); ++it) {
            if (!declared.contains(it.key()))
                refuse(path, "graph '" + name + "' lacks the required " + singular + " '" + it.key() + "'");
            std::vector<Json> want(it.value().begin(), it.value().end());
            if (!same_shape(declared[it.key()], want))
                refuse(path, "graph '" + name + "' " + singular + " '" + it.key() + "' is declared " +
                                 shape_repr(declared[it.key()]) + ", the format requires " + shape_repr(it.value()));
        }
        for (const onnx::ValueInfo* v : actual) {
            if (!v->is_tensor || v->elem_type != onnx::FLOAT)
                refuse(path, "graph '" + name + "' " + singular + " '" + v->name + "' is " + ort_type(v->elem_type) + ", not float32");
            std::vector<Json> dims = dims_of(*v);
            if (!same_shape(declared[v->name], dims)) {
                Json shown = Json::array();
                for (const Json& x : dims) shown.push_back(x);
                refuse(path, "graph '" + name + "' " + singular + " '" + v->name + "' has shape " + shape_repr(shown) +
                                 ", manifest.json declares " + shape_repr(declared[v->name]));
            }
        }
    }
    auto graph = Graph::compile(model, problem);
    if (!graph) refuse(path, "graph '" + name + "' cannot be played by the native core: " + problem);
    if (!graph->plan(kGraphBatch, problem)) refuse(path, "graph '" + name + "' cannot be evaluated by the native core: " + problem);
    return graph;
}

// Run each graph once on two rows of default controls; outputs must be finite and of the declared shapes.
void probe(const std::string& path, const Json& m, Instrument& instrument, std::vector<std::unique_ptr<Graph>>& others,
           const std::vector<std::string>& other_roles) {
    int64_t n = m["modes"].get<int64_t>();
    float controls[8];
    for (int row = 0; row < 2; ++row)
        for (int k = 0; k < 4; ++k) controls[4 * row + k] = float(kDefaultControls[k]);
    std::vector<float> state;
    const char* roles[3] = {"excite", "readout", "field"};   // engine/bundle.py GRAPH_ROLES, in this order
    for (const char* role_name : roles) {
        std::string role = role_name;
        Graph* g = nullptr;
        if (role == "excite") g = instrument.excite.get();
        else if (role == "readout") g = instrument.readout.get();
        else
            for (size_t k = 0; k < other_roles.size(); ++k)
                if (other_roles[k] == role) g = others[k].get();
        if (!g) continue;
        Graph probe_graph = *g;   // keep the loaded graph's buffers untouched
        bool ok = role == "excite" ? probe_graph.run(controls, 2) : probe_graph.run(state.data(), 2);
        if (!ok) refuse(path, "probe call of graph '" + role + "' failed (" + probe_graph.last_error() + ")");
        const Json& declared_outputs = m["graphs"][role]["outputs"];
        for (int k = 0; k < probe_graph.output_count(); ++k) {
            const Value& v = probe_graph.output(k);
            const std::string& tensor = probe_graph.output_name(k);
            std::vector<Json> dims;
            for (int j = 0; j < v.shape.rank; ++j) dims.emplace_back(v.shape.d[j]);
            if (v.shape.rank == 0 || v.shape.d[0] != 2 || !same_shape(declared_outputs[tensor], dims)) {
                Json shown = Json::array();
                for (const Json& x : dims) shown.push_back(x);
                refuse(path, "probe of graph '" + role + "' returned '" + tensor + "' of shape " + shape_repr(shown) +
                                 ", declared " + shape_repr(declared_outputs[tensor]));
            }
            int64_t count = v.shape.numel();
            for (int64_t j = 0; j < count; ++j)
                if (!std::isfinite(v.f[size_t(j)])) refuse(path, "probe of graph '" + role + "' returned non-finite '" + tensor + "'");
        }
        if (role == "excite") {
            const Value& z0 = probe_graph.output(instrument.outputs.z0);
            if (!(z0.shape.rank == 3 && z0.shape.d[0] == 2 && z0.shape.d[1] == n && z0.shape.d[2] == 2)) {
                std::string shown = "[";
                for (int j = 0; j < z0.shape.rank; ++j) shown += (j ? ", " : "") + std::to_string(z0.shape.d[j]);
                refuse(path, "probe of graph 'excite' returned z0 of shape " + shown + "]");
            }
            state.assign(z0.f.begin(), z0.f.begin() + z0.shape.numel());
            const Value& sigma = probe_graph.output(instrument.outputs.sigma);
            const Value& omega = probe_graph.output(instrument.outputs.omega);
            for (int64_t j = 0; j < sigma.shape.numel(); ++j)
                if (sigma.f[size_t(j)] < 0) refuse(path, "probe of graph 'excite' returned negative sigma or omega");
            for (int64_t j = 0; j < omega.shape.numel(); ++j)
                if (omega.f[size_t(j)] < 0) refuse(path, "probe of graph 'excite' returned negative sigma or omega");
        }
    }
}

bool is_directory(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::shared_ptr<Instrument> load(const std::string& path) {
    std::string problem, digest;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) refuse(path, "no such bundle file");
    BundleMembers members;
    if (!members.open(path, is_directory(path), kArchiveCap, problem)) {
        if (!problem.empty() && problem[0] == '@') refuse(path, problem.substr(1));
        refuse(path, "not a readable bundle archive (" + problem + ")");
    }
    if (members.size("manifest.json") < 0) refuse(path, "no manifest.json at the top level of the bundle");
    std::vector<uint8_t> manifest_bytes = read_member(path, members, "manifest.json", kManifestCap,
                                                      "manifest size; raise it with --limit manifest-kb=2048");
    digest = is_directory(path) ? sha256_hex(manifest_bytes.data(), manifest_bytes.size())
                                : sha256_hex(members.archive().data(), members.archive().size());
    Json m;
    try {
        m = Json::parse(manifest_bytes.begin(), manifest_bytes.end());
    } catch (const Json::exception& e) {
        std::string what = e.what();
        size_t cut = what.find("] ");
        refuse(path, "manifest.json is not valid JSON (" + (cut == std::string::npos ? what : what.substr(cut + 2)) + ")");
    }
    check_manifest(path, m);

    auto instrument = std::make_shared<Instrument>();
    std::vector<std::unique_ptr<Graph>> others;
    std::vector<std::string> other_roles;
    for (auto it = m["graphs"].begin(); it != m["graphs"].end(); ++it) {
        auto graph = check_graph(path, m, it.key(), members);
        if (it.key() == "excite") instrument->excite = std::move(graph);
        else if (it.key() == "readout") instrument->readout = std::move(graph);
        else {
            others.push_back(std::move(graph));
            other_roles.push_back(it.key());
        }
    }
    ExciteOutputs& o = instrument->outputs;
    const Graph& e = *instrument->excite;
    o.sigma = e.output_index("sigma");
    o.omega = e.output_index("omega");
    o.z0 = e.output_index("z0");
    o.c = e.output_index("c");
    o.mod_alpha = e.output_index("mod_alpha");
    o.mod_beta = e.output_index("mod_beta");
    o.attack = e.output_index("attack");
    probe(path, m, *instrument, others, other_roles);

    InstrumentInfo& info = instrument->info;
    const Json& range = m["note_range"];   // checked in check_numbers
    info.path = path;
    info.name = m["name"].get<std::string>();
    info.family = m["family"].get<std::string>();
    info.description = m.contains("description") && m["description"].is_string() ? m["description"].get<std::string>() : "";
    info.sha256 = digest;
    info.modes = int(m["modes"].get<int64_t>());
    info.note_lo = int(range[0].get<double>());
    info.note_hi = int(range[1].get<double>());
    info.trained_sample_rate = m["trained_sample_rate"].get<double>();
    info.release_time = m["release_time"].get<double>();
    info.modulation = m["modulation"].get<bool>();
    info.has_readout = instrument->readout != nullptr;
    if (m.contains("attack")) {   // checked in check_manifest; its graph output in check_graph
        info.attack_samples = int(m["attack"]["samples"].get<int64_t>());
        info.attack_sample_rate = m["attack"]["sample_rate"].get<double>();
        info.has_attack = true;
    }

    const Json gain = m.contains("output_gain") ? m["output_gain"] : Json();
    bool truthy = gain.is_number() ? gain.get<double>() != 0.0 : (gain.is_boolean() ? gain.get<bool>() : false);
    if (truthy) {
        info.output_gain = gain.get<double>();
    } else {
        // The probe note: middle of the range, full velocity, default position.
        float controls[4] = {float(0.5 * (range[0].get<double>() + range[1].get<double>())), 1.0f, float(kDefaultControls[2]),
                             float(kDefaultControls[3])};
        Graph g = *instrument->excite;
        if (!g.run(controls, 1)) refuse(path, std::string("level probe failed (") + g.last_error() + ")");
        auto out = [&](int k) { return k >= 0 ? g.output(k).fp() : nullptr; };
        info.output_gain = level_gain(out(o.sigma), out(o.omega), out(o.z0), out(o.c), out(o.mod_alpha), out(o.mod_beta),
                                      info.modes);
    }
    return instrument;
}

}  // namespace

double Instrument::release_sigma() const { return std::log(1000.0) / std::max(info.release_time, 1e-3); }

double level_gain(const float* sigma, const float* omega, const float* z0, const float* c, const float* mod_alpha,
                  const float* mod_beta, int modes) {
    const double fs = 48000.0;
    const int n = 4800;
    std::vector<std::complex<double>> w(static_cast<size_t>(modes)), p(static_cast<size_t>(modes));
    double energy = 0.0;
    if (mod_alpha)
        for (int m = 0; m < modes; ++m)
            energy += double(mod_beta[m]) * (double(z0[2 * m]) * z0[2 * m] + double(z0[2 * m + 1]) * z0[2 * m + 1]);
    for (int m = 0; m < modes; ++m) {
        double om = omega[m];
        if (mod_alpha) om = std::sqrt(om * om + double(mod_alpha[m]) * energy);
        std::complex<double> zc(z0[2 * m], z0[2 * m + 1]), cc(c[2 * m], c[2 * m + 1]);
        w[size_t(m)] = cc * zc;
        p[size_t(m)] = std::fabs(om) < M_PI * fs ? std::exp(std::complex<double>(-std::max(double(sigma[m]), 0.0), om) / fs)
                                                  : std::complex<double>(0.0, 0.0);
    }
    double peak = 0.0;
    for (int k = 0; k < n; ++k) {
        double y = 0.0;
        for (int m = 0; m < modes; ++m) {
            y += w[size_t(m)].real();
            w[size_t(m)] *= p[size_t(m)];
        }
        if (!(std::fabs(y) <= peak)) peak = std::fabs(y);   // NaN propagates into peak
    }
    return std::isfinite(peak) && peak > 0 ? kLevel / peak : 1.0;
}

LoadResult load_instrument(const std::string& path) {
    try {
        return {load(path), ""};
    } catch (const Failure& f) {
        return {nullptr, f.message};
    } catch (const std::exception& e) {
        return {nullptr, path + ": " + e.what()};
    }
}

const InstrumentInfo& info(const Instrument& instrument) { return instrument.info; }

}  // namespace eigentone
