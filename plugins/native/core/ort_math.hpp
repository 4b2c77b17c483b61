// Scalar float32 functions for the element-wise ops of graph.cpp.
//
// Why not just std::exp: a partial's frequency comes out of the excite graph, and one float32 ulp of
// omega is audible at the 80 dB parity level after a few seconds of ringing. So these functions aim to
// return what onnxruntime's CPU kernels return for the same input (tests/test_native_graph.py counts the
// bit-exact fraction per function against onnxruntime).
#pragma once

namespace eigentone {
namespace ortm {

float exp(float x);
float log(float x);
float tanh(float x);
float erf(float x);
float cos(float x);
float sin(float x);
float pow(float x, float y);
float sqrt(float x);

// a * b + c with one rounding when the CPU has FMA (as MLAS's kernels use), else two roundings.
bool has_fma();

}  // namespace ortm
}  // namespace eigentone
