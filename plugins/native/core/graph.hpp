// Evaluator for the ONNX graphs `eigentone export` writes: exactly the op subset listed in export/op_subset.py
// (tests/test_native_graph.py keeps the two lists equal), rank <= kMaxRank, float32 data with int64 shape
// arithmetic and bool masks.
//
// Buffers are planned once: compile() resolves names and checks ops, plan(max_batch) evaluates the graph at
// batch 1 and max_batch with growing buffers and keeps the largest size of every tensor. After that,
// run() only writes into those buffers (no allocation, no lock): it is what the audio thread calls.
//
// Arithmetic follows onnxruntime's CPU kernels where the result depends on it: Gemm/MatMul accumulate each
// output as a fused multiply-add chain over k in blocks of 256, then add the bias (MLAS); Pow by 2 is x*x;
// see ort_math.hpp for the element-wise functions.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "onnx_proto.hpp"

namespace eigentone {

constexpr int kMaxRank = 6;

enum class DType : uint8_t { F32, I64, Bool };

struct Shape {
    int rank = 0;
    int64_t d[kMaxRank] = {0, 0, 0, 0, 0, 0};
    int64_t numel() const {
        int64_t n = 1;
        for (int k = 0; k < rank; ++k) n *= d[k];
        return n;
    }
    bool operator==(const Shape& o) const {
        if (rank != o.rank) return false;
        for (int k = 0; k < rank; ++k)
            if (d[k] != o.d[k]) return false;
        return true;
    }
};

// One tensor slot of the graph: an initializer/constant, the input, or a node output.
struct Value {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    std::vector<float> f;        // F32 data (capacity fixed after plan)
    std::vector<int64_t> i;      // I64 and Bool (0/1) data
    bool constant = false;
    bool defined = false;        // has a producer (or is the input / a constant)
    float* fp() { return f.data(); }
    int64_t* ip() { return i.data(); }
    const float* fp() const { return f.data(); }
    const int64_t* ip() const { return i.data(); }
};

enum class Op : uint8_t {
    Abs, Add, Cast, Clip, Concat, Constant, Cos, Div, Einsum, Equal, Erf, Exp, Expand, Floor, Gather, GatherElements, Gemm,
    Greater, Identity, Less, LessOrEqual, Log, MatMul, Max, Min, Mul, Neg, Or, Pow, ReduceMin, ReduceSum, Relu, Reshape,
    Shape, Sin, Slice, Softmax, Sqrt, Sub, Tanh, Tile, Unsqueeze, Where,
};

// The supported ops (the C++ side of export/op_subset.py's OPS table; tests keep the two identical).
struct AttributeRule {
    const char* name;
    int n_allowed;               // 0: any value; else the first n_allowed entries of `allowed`
    int64_t allowed[3];
};

struct OpInfo {
    const char* name;
    Op op;
    int min_inputs, max_inputs;  // max_inputs -1: any number
    AttributeRule attributes[5]; // terminated by a null name
    const char* required;        // a required attribute, or null
};
extern const OpInfo kOps[];
extern const int kOpCount;

struct EinsumPlan {              // a parsed equation of one or two operands
    int operands = 0;
    std::string terms[2], output; // letters, '.' stands for the broadcast (ellipsis) axes
};

struct Step {
    Op op;
    std::string name;            // node name or first output, for messages
    std::vector<int> in;         // value indices, -1 for an absent optional input
    int out = -1;
    int64_t axis = 0;
    int64_t start = 0, end = 0;
    bool has_end = false;
    int trans_a = 0, trans_b = 0;
    float alpha = 1.0f, beta = 1.0f;
    int keepdims = 1, noop_with_empty_axes = 0, allowzero = 0;
    DType to = DType::F32;
    EinsumPlan einsum;
};

class Graph {
public:
    // Resolve names, check every node against the supported subset (ops, attributes, opset). nullptr + error.
    static std::unique_ptr<Graph> compile(const onnx::Model& model, std::string& error);
    // Allocate every buffer for batches of 1..max_batch rows. Not real-time safe.
    bool plan(int max_batch, std::string& error);
    int max_batch() const { return max_batch_; }

    // Evaluate on `batch` rows (1..max_batch) of the single input (row-major, batch x input_row_size()).
    // Real-time safe after plan(). False if an op fails (e.g. an index out of range); see last_error().
    bool run(const float* input, int batch);
    const char* last_error() const { return error_; }

    const std::string& input_name() const { return values_[input_].name; }
    const Shape& input_shape() const { return input_shape_; }   // dims[0] is the batch axis
    int64_t input_row_size() const;
    int output_count() const { return int(outputs_.size()); }
    const std::string& output_name(int k) const { return values_[outputs_[k]].name; }
    int output_index(const std::string& name) const;             // -1 if no such output
    const Value& output(int k) const { return values_[outputs_[k]]; }
    int steps() const { return int(steps_.size()); }

private:
    bool execute(bool grow);
    std::vector<Value> values_;
    std::vector<Step> steps_;
    std::vector<int> outputs_;
    int input_ = -1;
    Shape input_shape_;
    int max_batch_ = 0;
    const char* error_ = "";
    const Step* failed_step_ = nullptr;
};

// Returns the problems of a model against the supported subset ("" entries never), empty when it is
// supported. Same rules as compile(); used by bundle loading to say which node is unsupported.
std::vector<std::string> unsupported(const onnx::Model& model);

// The supported subset as JSON (same shape as export/op_subset.py table()).
std::string supported_ops_json();

}  // namespace eigentone
