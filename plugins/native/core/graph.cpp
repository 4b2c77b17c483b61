#include "graph.hpp"

#include <map>
#include <set>

#include "ops.hpp"

namespace eigentone {

const OpInfo kOps[] = {
    {"Abs", Op::Abs, 1, 1, {}, nullptr},
    {"Add", Op::Add, 2, 2, {}, nullptr},
    {"Cast", Op::Cast, 1, 1, {{"to", 3, {1, 7, 9}}}, "to"},
    {"Clip", Op::Clip, 1, 3, {}, nullptr},
    {"Concat", Op::Concat, 1, -1, {{"axis", 0, {}}}, "axis"},
    {"Constant", Op::Constant, 0, 0,
     {{"value", 0, {}}, {"value_float", 0, {}}, {"value_floats", 0, {}}, {"value_int", 0, {}}, {"value_ints", 0, {}}},
     nullptr},
    {"Cos", Op::Cos, 1, 1, {}, nullptr},
    {"Div", Op::Div, 2, 2, {}, nullptr},
    {"Einsum", Op::Einsum, 1, 2, {{"equation", 0, {}}}, "equation"},
    {"Equal", Op::Equal, 2, 2, {}, nullptr},
    {"Erf", Op::Erf, 1, 1, {}, nullptr},
    {"Exp", Op::Exp, 1, 1, {}, nullptr},
    {"Expand", Op::Expand, 2, 2, {}, nullptr},
    {"Floor", Op::Floor, 1, 1, {}, nullptr},
    {"Gather", Op::Gather, 2, 2, {{"axis", 0, {}}}, nullptr},
    {"GatherElements", Op::GatherElements, 2, 2, {{"axis", 0, {}}}, nullptr},
    {"Gemm", Op::Gemm, 2, 3, {{"alpha", 0, {}}, {"beta", 0, {}}, {"transA", 2, {0, 1}}, {"transB", 2, {0, 1}}}, nullptr},
    {"Greater", Op::Greater, 2, 2, {}, nullptr},
    {"Identity", Op::Identity, 1, 1, {}, nullptr},
    {"Less", Op::Less, 2, 2, {}, nullptr},
    {"LessOrEqual", Op::LessOrEqual, 2, 2, {}, nullptr},
    {"Log", Op::Log, 1, 1, {}, nullptr},
    {"MatMul", Op::MatMul, 2, 2, {}, nullptr},
    {"Max", Op::Max, 1, 2, {}, nullptr},
    {"Min", Op::Min, 2, 2, {}, nullptr},
    {"Mul", Op::Mul, 2, 2, {}, nullptr},
    {"Neg", Op::Neg, 1, 1, {}, nullptr},
    {"Or", Op::Or, 2, 2, {}, nullptr},
    {"Pow", Op::Pow, 2, 2, {}, nullptr},
    {"ReduceMin", Op::ReduceMin, 1, 2, {{"keepdims", 2, {0, 1}}, {"noop_with_empty_axes", 2, {0, 1}}}, nullptr},
    {"ReduceSum", Op::ReduceSum, 1, 2, {{"keepdims", 2, {0, 1}}, {"noop_with_empty_axes", 2, {0, 1}}}, nullptr},
    {"Relu", Op::Relu, 1, 1, {}, nullptr},
    {"Reshape", Op::Reshape, 2, 2, {{"allowzero", 2, {0, 1}}}, nullptr},
    {"Shape", Op::Shape, 1, 1, {{"start", 0, {}}, {"end", 0, {}}}, nullptr},
    {"Sin", Op::Sin, 1, 1, {}, nullptr},
    {"Slice", Op::Slice, 3, 5, {}, nullptr},
    {"Softmax", Op::Softmax, 1, 1, {{"axis", 0, {}}}, nullptr},
    {"Sqrt", Op::Sqrt, 1, 1, {}, nullptr},
    {"Sub", Op::Sub, 2, 2, {}, nullptr},
    {"Tanh", Op::Tanh, 1, 1, {}, nullptr},
    {"Tile", Op::Tile, 2, 2, {}, nullptr},
    {"Unsqueeze", Op::Unsqueeze, 2, 2, {}, nullptr},
    {"Where", Op::Where, 3, 3, {}, nullptr},
};
const int kOpCount = int(sizeof(kOps) / sizeof(kOps[0]));

namespace {

const int64_t kOpsetMin = 13, kOpsetMax = 21;

const AttributeRule* attribute_rule(const OpInfo& info, const std::string& name) {
    for (const AttributeRule& rule : info.attributes)
        if (rule.name && name == rule.name) return &rule;
    return nullptr;
}

bool parse_einsum(const std::string& raw, EinsumPlan& plan) {
    std::string equation;
    for (char c : raw)
        if (c != ' ') equation += c;
    // '...' becomes '.'
    std::string compact;
    for (size_t k = 0; k < equation.size(); ++k) {
        if (equation.compare(k, 3, "...") == 0) {
            compact += '.';
            k += 2;
        } else if (equation[k] == '.') {
            return false;
        } else {
            compact += equation[k];
        }
    }
    size_t arrow = compact.find("->");
    std::string inputs = arrow == std::string::npos ? compact : compact.substr(0, arrow);
    size_t comma = inputs.find(',');
    plan.terms[0] = inputs.substr(0, comma);
    plan.operands = 1;
    if (comma != std::string::npos) {
        plan.terms[1] = inputs.substr(comma + 1);
        plan.operands = 2;
        if (plan.terms[1].find(',') != std::string::npos) return false;
    }
    std::map<char, int> counts;
    for (int p = 0; p < plan.operands; ++p) {
        int dots = 0;
        for (char c : plan.terms[p]) {
            if (c == '.') {
                ++dots;
            } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
                return false;
            } else {
                ++counts[c];
            }
        }
        if (dots > 1) return false;
    }
    if (arrow != std::string::npos) {
        plan.output = compact.substr(arrow + 2);
        for (char c : plan.output)
            if (c != '.' && !counts.count(c)) return false;
    } else {   // implicit output: '...' then the letters that appear once, in alphabetical order
        bool dots = plan.terms[0].find('.') != std::string::npos ||
                    (plan.operands == 2 && plan.terms[1].find('.') != std::string::npos);
        plan.output = dots ? "." : "";
        for (auto& [c, n] : counts)
            if (n == 1) plan.output += c;
    }
    return true;
}

bool value_from_tensor(const onnx::Tensor& t, Value& v, std::string& problem) {
    if (t.external) {
        problem = "external tensor data is not supported";
        return false;
    }
    if (t.dims.size() > size_t(kMaxRank)) {
        problem = "tensor rank above " + std::to_string(kMaxRank);
        return false;
    }
    v.shape.rank = int(t.dims.size());
    for (size_t k = 0; k < t.dims.size(); ++k) v.shape.d[k] = t.dims[k];
    if (t.data_type == onnx::FLOAT) {
        v.dtype = DType::F32;
        v.f = t.floats;
    } else if (t.data_type == onnx::INT64) {
        v.dtype = DType::I64;
        v.i = t.ints;
    } else if (t.data_type == onnx::BOOL) {
        v.dtype = DType::Bool;
        v.i = t.ints;
    } else {
        problem = "tensor type " + std::to_string(t.data_type) + " (only float32, int64 and bool are supported)";
        return false;
    }
    v.constant = true;
    v.defined = true;
    return true;
}

bool constant_value(const onnx::Node& node, Value& v, std::string& problem) {
    if (node.attributes.size() != 1) {
        problem = "Constant needs exactly one value attribute";
        return false;
    }
    const onnx::Attribute& a = node.attributes[0];
    if (a.name == "value") {
        if (a.t.size() != 1) {
            problem = "Constant 'value' is not a tensor";
            return false;
        }
        return value_from_tensor(a.t[0], v, problem);
    }
    v.constant = v.defined = true;
    if (a.name == "value_float") {
        v.dtype = DType::F32;
        v.f = {a.f};
    } else if (a.name == "value_floats") {
        v.dtype = DType::F32;
        v.f = a.floats;
        v.shape.rank = 1;
        v.shape.d[0] = int64_t(a.floats.size());
    } else if (a.name == "value_int") {
        v.dtype = DType::I64;
        v.i = {a.i};
    } else {
        v.dtype = DType::I64;
        v.i = a.ints;
        v.shape.rank = 1;
        v.shape.d[0] = int64_t(a.ints.size());
    }
    return true;
}

}  // namespace

std::string supported_ops_json() {
    std::string out = "{\"opset\": [" + std::to_string(kOpsetMin) + ", " + std::to_string(kOpsetMax) +
                      "], \"max_rank\": " + std::to_string(kMaxRank) + ", \"tensor_types\": [1, 7, 9], \"ops\": {";
    for (int k = 0; k < kOpCount; ++k) {
        const OpInfo& info = kOps[k];
        out += std::string(k ? ", " : "") + "\"" + info.name + "\": {\"inputs\": [" + std::to_string(info.min_inputs) +
               ", " + (info.max_inputs < 0 ? std::string("null") : std::to_string(info.max_inputs)) + "], \"attributes\": {";
        bool first = true;
        for (const AttributeRule& rule : info.attributes) {
            if (!rule.name) continue;
            out += std::string(first ? "" : ", ") + "\"" + rule.name + "\": ";
            first = false;
            if (rule.n_allowed == 0) {
                out += "null";
            } else {
                out += "[";
                for (int j = 0; j < rule.n_allowed; ++j) out += (j ? ", " : "") + std::to_string(rule.allowed[j]);
                out += "]";
            }
        }
        out += std::string("}, \"required\": [") + (info.required ? std::string("\"") + info.required + "\"" : "") + "]}";
    }
    return out + "}}";
}

std::vector<std::string> unsupported(const onnx::Model& model) {
    std::vector<std::string> problems;
    std::string error;
    auto graph = Graph::compile(model, error);
    if (!graph) problems.push_back(error);
    return problems;
}

std::unique_ptr<Graph> Graph::compile(const onnx::Model& model, std::string& error) {
    auto g = std::unique_ptr<Graph>(new Graph());
    std::vector<std::string> problems;
    int64_t opset = model.opset("");
    if (opset < kOpsetMin || opset > kOpsetMax)
        problems.push_back("default-domain opset " + std::to_string(opset) + " (supported: " +
                           std::to_string(kOpsetMin) + ".." + std::to_string(kOpsetMax) + ")");
    if (model.functions) problems.push_back("model-local functions are not supported");
    if (model.graph.sparse_initializers) problems.push_back("sparse initializers are not supported");
    std::map<std::string, int> index;
    auto add_value = [&](const std::string& name) {
        g->values_.emplace_back();
        g->values_.back().name = name;
        index[name] = int(g->values_.size()) - 1;
        return int(g->values_.size()) - 1;
    };
    for (const onnx::Tensor& t : model.graph.initializers) {
        int k = add_value(t.name);
        std::string problem;
        if (!value_from_tensor(t, g->values_[k], problem)) problems.push_back("initializer '" + t.name + "': " + problem);
    }
    for (const onnx::ValueInfo& in : model.graph.inputs) {
        if (index.count(in.name)) continue;   // an initializer with a default: a constant here
        if (g->input_ >= 0) {
            problems.push_back("more than one graph input ('" + g->values_[g->input_].name + "', '" + in.name + "')");
            continue;
        }
        if (!in.is_tensor || in.elem_type != onnx::FLOAT) {
            problems.push_back("graph input '" + in.name + "' is not a float32 tensor");
            continue;
        }
        if (!in.has_shape || in.dims.empty() || int(in.dims.size()) > kMaxRank) {
            problems.push_back("graph input '" + in.name + "' needs a shape of rank 1.." + std::to_string(kMaxRank));
            continue;
        }
        g->input_shape_.rank = int(in.dims.size());
        for (size_t k = 1; k < in.dims.size(); ++k) {
            if (!in.dims[k].has_value || in.dims[k].value < 1) {
                problems.push_back("graph input '" + in.name + "' axis " + std::to_string(k) + " is not a fixed size");
            }
            g->input_shape_.d[k] = in.dims[k].value;
        }
        g->input_ = add_value(in.name);
        g->values_[g->input_].defined = true;
    }
    if (g->input_ < 0 && problems.empty()) problems.push_back("the graph has no input");

    // Nodes in dependency order (Kahn); names resolved to value slots.
    const auto& nodes = model.graph.nodes;
    std::map<std::string, int> producer;
    for (size_t n = 0; n < nodes.size(); ++n)
        for (const std::string& out : nodes[n].outputs)
            if (!out.empty()) {
                if (producer.count(out) || index.count(out)) problems.push_back("tensor '" + out + "' is defined twice");
                producer[out] = int(n);
            }
    std::vector<int> pending(nodes.size(), 0);
    std::vector<std::vector<int>> users(nodes.size());
    for (size_t n = 0; n < nodes.size(); ++n)
        for (const std::string& in : nodes[n].inputs) {
            auto p = producer.find(in);
            if (!in.empty() && p != producer.end()) {
                ++pending[n];
                users[p->second].push_back(int(n));
            }
        }
    std::vector<int> order, ready;
    for (size_t n = 0; n < nodes.size(); ++n)
        if (!pending[n]) ready.push_back(int(n));
    for (size_t k = 0; k < ready.size(); ++k) {
        order.push_back(ready[k]);
        for (int u : users[ready[k]])
            if (--pending[u] == 0) ready.push_back(u);
    }
    if (order.size() != nodes.size()) problems.push_back("the graph has a cycle");

    for (int n : order) {
        const onnx::Node& node = nodes[n];
        std::string label = node.op_type + " node '" + (node.name.empty() ? (node.outputs.empty() ? "?" : node.outputs[0]) : node.name) + "'";
        if (!node.domain.empty() && node.domain != "ai.onnx") {
            problems.push_back(label + ": domain '" + node.domain + "' is not supported");
            continue;
        }
        const OpInfo* info = nullptr;
        for (int k = 0; k < kOpCount; ++k)
            if (node.op_type == kOps[k].name) info = &kOps[k];
        if (!info) {
            problems.push_back("op " + node.op_type + " is not supported (node '" + node.name + "')");
            continue;
        }
        bool ok = true;
        for (const onnx::Attribute& a : node.attributes) {
            const AttributeRule* rule = attribute_rule(*info, a.name);
            if (a.has_graph || !rule) {
                problems.push_back(label + ": attribute '" + a.name + "' is not supported");
                ok = false;
                continue;
            }
            bool allowed = rule->n_allowed == 0;
            for (int k = 0; k < rule->n_allowed; ++k) allowed = allowed || a.i == rule->allowed[k];
            if (!allowed) {
                std::string list;
                for (int k = 0; k < rule->n_allowed; ++k) list += (k ? ", " : "") + std::to_string(rule->allowed[k]);
                problems.push_back(label + ": attribute " + a.name + "=" + std::to_string(a.i) +
                                   " is not supported (allowed: " + list + ")");
                ok = false;
            }
        }
        if (info->required && !node.attribute(info->required)) {
            problems.push_back(label + ": " + node.op_type + " needs '" + info->required + "'");
            ok = false;
        }
        int lo = info->min_inputs, hi = info->max_inputs < 0 ? (1 << 20) : info->max_inputs;
        int n_inputs = int(node.inputs.size());
        while (n_inputs > 0 && node.inputs[n_inputs - 1].empty()) --n_inputs;
        if (n_inputs < lo || n_inputs > hi) {
            problems.push_back(label + ": " + std::to_string(n_inputs) + " inputs (supported: " + std::to_string(lo) +
                               (hi == lo ? "" : hi > 1000 ? " or more" : ".." + std::to_string(hi)) + ")");
            ok = false;
        }
        if (node.outputs.size() != 1 || node.outputs[0].empty()) {
            problems.push_back(label + ": exactly one output is supported");
            ok = false;
        }
        if (!ok) continue;
        Step step;
        step.op = info->op;
        step.name = label;
        for (int k = 0; k < n_inputs; ++k) {
            const std::string& in = node.inputs[k];
            if (in.empty()) {
                if (k < lo) {
                    problems.push_back(label + ": required input " + std::to_string(k) + " is empty");
                    ok = false;
                }
                step.in.push_back(-1);
                continue;
            }
            auto it = index.find(in);
            if (it == index.end()) {
                problems.push_back(label + ": input '" + in + "' is not defined");
                ok = false;
                continue;
            }
            step.in.push_back(it->second);
        }
        if (info->op == Op::Softmax) step.axis = -1;   // its default since opset 13
        for (const onnx::Attribute& a : node.attributes) {
            if (a.name == "axis") step.axis = a.i;
            else if (a.name == "start") step.start = a.i;
            else if (a.name == "end") { step.end = a.i; step.has_end = true; }
            else if (a.name == "transA") step.trans_a = a.i != 0;
            else if (a.name == "transB") step.trans_b = a.i != 0;
            else if (a.name == "alpha") step.alpha = a.f;
            else if (a.name == "beta") step.beta = a.f;
            else if (a.name == "keepdims") step.keepdims = a.i != 0;
            else if (a.name == "noop_with_empty_axes") step.noop_with_empty_axes = a.i != 0;
            else if (a.name == "allowzero") step.allowzero = a.i != 0;
            else if (a.name == "to") step.to = a.i == onnx::FLOAT ? DType::F32 : a.i == onnx::INT64 ? DType::I64 : DType::Bool;
            else if (a.name == "equation") {
                if (!parse_einsum(a.s, step.einsum)) {
                    problems.push_back(label + ": Einsum equation '" + a.s + "' is not supported (1 or 2 operands)");
                    ok = false;
                }
            }
        }
        if (info->op == Op::Einsum) {
            if (ok && step.einsum.operands != n_inputs) {
                problems.push_back(label + ": Einsum equation and inputs disagree");
                ok = false;
            }
        }
        int out = add_value(node.outputs[0]);
        step.out = out;
        g->values_[out].defined = true;
        if (info->op == Op::Constant) {
            std::string problem;
            if (!constant_value(node, g->values_[out], problem)) {
                problems.push_back(label + ": " + problem);
                ok = false;
            }
            continue;   // folded: no step
        }
        // A constant transposed B of Gemm is stored transposed once, so the product runs along contiguous rows.
        if (ok && info->op == Op::Gemm && step.trans_b && g->values_[step.in[1]].constant &&
            g->values_[step.in[1]].dtype == DType::F32 && g->values_[step.in[1]].shape.rank == 2) {
            const Value& b = g->values_[step.in[1]];
            Value packed;
            packed.name = b.name + " (transposed)";
            packed.dtype = DType::F32;
            packed.shape.rank = 2;
            packed.shape.d[0] = b.shape.d[1];
            packed.shape.d[1] = b.shape.d[0];
            packed.f.resize(b.f.size());
            for (int64_t r = 0; r < b.shape.d[0]; ++r)
                for (int64_t c = 0; c < b.shape.d[1]; ++c) packed.f[size_t(c * b.shape.d[0] + r)] = b.f[size_t(r * b.shape.d[1] + c)];
            packed.constant = packed.defined = true;
            g->values_.push_back(std::move(packed));
            step.in[1] = int(g->values_.size()) - 1;
            step.trans_b = 0;
        }
        if (ok) g->steps_.push_back(step);
    }
    for (const onnx::ValueInfo& out : model.graph.outputs) {
        auto it = index.find(out.name);
        if (it == index.end()) {
            problems.push_back("graph output '" + out.name + "' is not produced by any node");
            continue;
        }
        g->outputs_.push_back(it->second);
    }
    if (!problems.empty()) {
        error = problems[0];
        if (problems.size() > 1) error += " (and " + std::to_string(problems.size() - 1) + " more)";
        return nullptr;
    }
    return g;
}

int64_t Graph::input_row_size() const {
    int64_t n = 1;
    for (int k = 1; k < input_shape_.rank; ++k) n *= input_shape_.d[k];
    return n;
}

int Graph::output_index(const std::string& name) const {
    for (size_t k = 0; k < outputs_.size(); ++k)
        if (values_[outputs_[k]].name == name) return int(k);
    return -1;
}

bool Graph::execute(bool grow) {
    for (const Step& step : steps_) {
        const char* message = "";
        if (!run_step(step, values_, grow, message)) {
            error_ = message;
            failed_step_ = &step;
            return false;
        }
    }
    return true;
}

bool Graph::plan(int max_batch, std::string& error) {
    if (max_batch < 1) max_batch = 1;
    Value& input = values_[input_];
    int64_t row = input_row_size();
    input.f.assign(size_t(row * max_batch), 0.0f);
    // Tensor sizes grow with the batch (affine in it for every supported op), so the largest buffers come from
    // the largest batch; batch 1 is run too, and run() still checks every size against the plan.
    for (int batch : {1, max_batch}) {
        input.shape = input_shape_;
        input.shape.d[0] = batch;
        if (!execute(true)) {
            error = failed_step_->name + ": " + error_;
            return false;
        }
    }
    for (int k : outputs_)
        if (values_[k].dtype != DType::F32) {
            error = "graph output '" + values_[k].name + "' is not float32";
            return false;
        }
    max_batch_ = max_batch;
    return true;
}

bool Graph::run(const float* input_rows, int batch) {
    if (batch < 1 || batch > max_batch_) {
        error_ = "batch outside the planned range";
        return false;
    }
    Value& input = values_[input_];
    int64_t n = input_row_size() * batch;
    for (int64_t k = 0; k < n; ++k) input.f[size_t(k)] = input_rows[k];
    input.shape = input_shape_;
    input.shape.d[0] = batch;
    return execute(false);
}

}  // namespace eigentone
