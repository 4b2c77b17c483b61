// CPU features the core dispatches on at run time (one build runs on any x86-64; kernels with wider vectors or
// fused multiply-adds are chosen where the CPU has them).
#pragma once

namespace eigentone {
namespace cpu {

#if defined(__x86_64__) || defined(__i386__)
inline bool fma() {
    static const bool yes = __builtin_cpu_supports("fma");
    return yes;
}
inline bool avx2() {
    static const bool yes = __builtin_cpu_supports("avx2") && fma();
    return yes;
}
inline bool avx512() {
    static const bool yes = __builtin_cpu_supports("avx512f") && avx2();
    return yes;
}
#else
inline bool fma() { return true; }
inline bool avx2() { return false; }
inline bool avx512() { return false; }
#endif

}  // namespace cpu
}  // namespace eigentone
