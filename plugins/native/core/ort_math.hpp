// Element-wise float32 functions of the graph evaluator, computed the way onnxruntime's CPU kernels compute
// them, so that the native core's excite outputs are bit-identical to the Python engine's in almost every
// element.
//
// Why it matters: a partial's frequency comes out of the excite graph, and one float32 ulp of omega moves
// a partial's phase audibly at the 80 dB parity level after a few seconds of ringing (measured: random
// +-1 ulp on omega costs the demo render ~78 dB). What onnxruntime 1.x does on x86-64:
//   Exp, Tanh, Erf: MLAS kernels (range reduction + polynomial, fused multiply-adds when the CPU has FMA);
//   Log, Sin, Cos:  Eigen's packet functions on groups of 4 elements (separate multiply and add), and the
//                   scalar std:: function on the last n % 4 elements of the tensor;
//   Pow: std::pow, with x*x and x*x*x for a scalar exponent of 2 and 3 (ops.cpp); Sqrt: IEEE square root.
// The algorithms are re-implemented from their published descriptions (polynomial coefficients are the
// published ones). tests/test_native_graph.py checks each function bit for bit against onnxruntime.
#pragma once
#include <cstdint>

namespace eigentone {
namespace ortm {

void exp(const float* x, float* y, int64_t n);
void log(const float* x, float* y, int64_t n);
void tanh(const float* x, float* y, int64_t n);
void erf(const float* x, float* y, int64_t n);
void cos(const float* x, float* y, int64_t n);
void sin(const float* x, float* y, int64_t n);

}  // namespace ortm
}  // namespace eigentone
