#include "ort_math.hpp"

#include <cmath>

namespace eigentone {
namespace ortm {

float exp(float x) { return float(std::exp(double(x))); }
float log(float x) { return float(std::log(double(x))); }
float tanh(float x) { return float(std::tanh(double(x))); }
float erf(float x) { return float(std::erf(double(x))); }
float cos(float x) { return float(std::cos(double(x))); }
float sin(float x) { return float(std::sin(double(x))); }
float pow(float x, float y) { return std::pow(x, y); }
float sqrt(float x) { return std::sqrt(x); }

bool has_fma() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool fma = __builtin_cpu_supports("fma");
    return fma;
#else
    return true;
#endif
}

}  // namespace ortm
}  // namespace eigentone
