// A minimal protobuf decoder for ONNX ModelProto: the fields the graph evaluator needs (graph, nodes,
// attributes, initializers with raw_data or typed fields, inputs/outputs/value_info with shapes, opsets).
// Unknown fields are skipped; anything malformed, truncated or out of the supported range is an error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace eigentone {
namespace onnx {

// TensorProto.DataType values this decoder understands.
enum DataType : int32_t { UNDEFINED = 0, FLOAT = 1, INT32 = 6, INT64 = 7, BOOL = 9, DOUBLE = 11 };

struct Tensor {
    std::string name;
    int32_t data_type = UNDEFINED;        // FLOAT, INT64 or BOOL after decoding (INT32/DOUBLE are converted)
    std::vector<int64_t> dims;
    std::vector<float> floats;             // FLOAT
    std::vector<int64_t> ints;             // INT64 and BOOL (0/1)
    bool external = false;                 // data_location EXTERNAL: refused by the evaluator
};

struct Dim {
    bool has_value = false;
    int64_t value = 0;
    std::string param;                     // symbolic name ("voices"), empty if none
};

struct ValueInfo {
    std::string name;
    int32_t elem_type = UNDEFINED;         // of a tensor type; UNDEFINED for non-tensor types
    bool is_tensor = false, has_shape = false;
    std::vector<Dim> dims;
};

enum AttributeType : int32_t { A_UNDEFINED = 0, A_FLOAT = 1, A_INT = 2, A_STRING = 3, A_TENSOR = 4, A_GRAPH = 5,
                               A_FLOATS = 6, A_INTS = 7, A_STRINGS = 8, A_TENSORS = 9, A_GRAPHS = 10 };

struct Attribute {
    std::string name;
    int32_t type = A_UNDEFINED;
    float f = 0;
    int64_t i = 0;
    std::string s;
    std::vector<Tensor> t;                 // 0 or 1 tensor (A_TENSOR)
    std::vector<float> floats;
    std::vector<int64_t> ints;
    bool has_graph = false;                // subgraphs are not decoded (no supported op takes one)
};

struct Node {
    std::vector<std::string> inputs, outputs;
    std::string name, op_type, domain;
    std::vector<Attribute> attributes;
    const Attribute* attribute(const std::string& attribute_name) const;
};

struct Graph {
    std::vector<Node> nodes;
    std::vector<Tensor> initializers;
    std::vector<ValueInfo> inputs, outputs, value_info;
    size_t sparse_initializers = 0;
};

struct OpsetId {
    std::string domain;
    int64_t version = 0;
};

struct Model {
    int64_t ir_version = 0;
    std::vector<OpsetId> opsets;
    Graph graph;
    size_t functions = 0;                  // model-local functions (not supported by the evaluator)
    int64_t opset(const std::string& domain) const;   // -1 if not imported
};

// Decode serialised ModelProto bytes; false with a short reason in `error` on failure.
bool decode_model(const uint8_t* data, size_t size, Model& model, std::string& error);

}  // namespace onnx
}  // namespace eigentone
