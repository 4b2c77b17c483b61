// C API (c_api.h) over the C++ core.
#include "c_api.h"

#include <cstring>
#include <string>

#include "eigentone_core.hpp"
#include "graph.hpp"
#include "onnx_proto.hpp"

namespace {

void copy_text(const std::string& text, char* out, int size) {
    if (!out || size <= 0) return;
    size_t n = std::min(text.size(), size_t(size - 1));
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

}  // namespace

struct et_graph {
    std::unique_ptr<eigentone::Graph> graph;
};

extern "C" {

const char* et_version(void) { return "eigentone-core 1"; }

et_graph* et_graph_load(const uint8_t* onnx, size_t size, int max_batch, char* err, int err_size) {
    eigentone::onnx::Model model;
    std::string error;
    if (!eigentone::onnx::decode_model(onnx, size, model, error)) {
        copy_text("not a decodable ONNX model (" + error + ")", err, err_size);
        return nullptr;
    }
    auto graph = eigentone::Graph::compile(model, error);
    if (!graph || !graph->plan(max_batch, error)) {
        copy_text(error, err, err_size);
        return nullptr;
    }
    return new et_graph{std::move(graph)};
}

void et_graph_free(et_graph* graph) { delete graph; }

int et_graph_run(et_graph* graph, const float* input, int batch) { return graph->graph->run(input, batch) ? 1 : 0; }

const char* et_graph_error(const et_graph* graph) { return graph->graph->last_error(); }

int et_graph_outputs(const et_graph* graph) { return graph->graph->output_count(); }

const char* et_graph_output_name(const et_graph* graph, int k) { return graph->graph->output_name(k).c_str(); }

int et_graph_output_shape(const et_graph* graph, int k, int64_t* dims) {
    const eigentone::Value& v = graph->graph->output(k);
    for (int j = 0; j < v.shape.rank && j < 8; ++j) dims[j] = v.shape.d[j];
    return v.shape.rank;
}

const float* et_graph_output_data(const et_graph* graph, int k) { return graph->graph->output(k).fp(); }

int et_check_graph(const uint8_t* onnx, size_t size, char* out, int size_out) {
    eigentone::onnx::Model model;
    std::string error;
    if (!eigentone::onnx::decode_model(onnx, size, model, error)) {
        copy_text(error, out, size_out);
        return -1;
    }
    std::vector<std::string> problems = eigentone::unsupported(model);
    std::string text;
    for (const std::string& p : problems) text += p + "\n";
    copy_text(text, out, size_out);
    return int(problems.size());
}

}  // extern "C"
