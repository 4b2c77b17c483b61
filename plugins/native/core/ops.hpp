// Kernels of the supported ops (graph.hpp). Each computes its output shape from its inputs, then either grows
// the output buffer (planning) or checks it fits (real time), then writes the data.
#pragma once
#include <vector>

#include "graph.hpp"

namespace eigentone {

bool run_step(const Step& step, std::vector<Value>& values, bool grow, const char*& error);

// Gemm/MatMul core: out[m, n] (+)= sum_k a[m, k] * b[k, n] with strides, MLAS accumulation order.
void matmul_block(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_row, int64_t b_col,
                  float* out, int64_t out_row, int64_t m_count, int64_t n_count, int64_t k_count, float alpha,
                  bool accumulate);

}  // namespace eigentone
