#include "ops.hpp"

#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "cpu.hpp"
#include "ort_math.hpp"

namespace eigentone {
namespace {

bool fail(const char*& error, const char* message) {
    error = message;
    return false;
}

// Set the output's type and shape; grow its buffer when planning, else check that it fits.
bool prepare_output(Value& out, DType dtype, const Shape& shape, bool grow, const char*& error) {
    int64_t n = shape.numel();
    if (n < 0 || n > (int64_t(1) << 28)) return fail(error, "tensor too large");
    out.dtype = dtype;
    out.shape = shape;
    if (dtype == DType::F32) {
        if (size_t(n) > out.f.size()) {
            if (!grow) return fail(error, "tensor larger than planned");
            out.f.resize(size_t(n));
        }
    } else if (size_t(n) > out.i.size()) {
        if (!grow) return fail(error, "tensor larger than planned");
        out.i.resize(size_t(n));
    }
    return true;
}

int64_t normalise_axis(int64_t axis, int rank) { return axis < 0 ? axis + rank : axis; }

// ---- broadcasting ----------------------------------------------------------------------------------------

bool broadcast_shape(const Shape* const* shapes, int count, Shape& out) {
    int rank = 0;
    for (int k = 0; k < count; ++k) rank = std::max(rank, shapes[k]->rank);
    out.rank = rank;
    for (int axis = 0; axis < rank; ++axis) {
        int64_t dim = 1;
        for (int k = 0; k < count; ++k) {
            int offset = rank - shapes[k]->rank;
            if (axis < offset) continue;
            int64_t d = shapes[k]->d[axis - offset];
            if (d == dim || d == 1) continue;
            if (dim != 1) return false;
            dim = d;
        }
        out.d[axis] = dim;
    }
    return true;
}

// Strides (in elements) of `in` along each axis of `out`; 0 where `in` is broadcast.
void broadcast_strides(const Shape& in, const Shape& out, int64_t* strides) {
    int offset = out.rank - in.rank;
    int64_t stride = 1;
    for (int axis = out.rank - 1; axis >= 0; --axis) {
        int k = axis - offset;
        if (k < 0 || in.d[k] == 1) {
            strides[axis] = 0;
        } else {
            strides[axis] = stride;
        }
        if (k >= 0) stride *= in.d[k];
    }
}

// Calls f(out_index, offsets[0..count)) for every element of `out` in row-major order.
template <int N, class F>
void for_each_broadcast(const Shape& out, const Shape* const* ins, F f) {
    if (out.numel() == 0) return;
    int64_t strides[N][kMaxRank];
    for (int k = 0; k < N; ++k) broadcast_strides(*ins[k], out, strides[k]);
    int rank = out.rank;
    if (rank == 0) {
        int64_t offsets[N] = {};
        f(0, offsets);
        return;
    }
    int64_t counter[kMaxRank] = {};
    int64_t base[N] = {};
    int64_t inner = out.d[rank - 1];
    int64_t index = 0;
    int64_t total = out.numel();
    while (index < total) {
        for (int64_t j = 0; j < inner; ++j) {
            int64_t offsets[N];
            for (int k = 0; k < N; ++k) offsets[k] = base[k] + j * strides[k][rank - 1];
            f(index + j, offsets);
        }
        index += inner;
        for (int axis = rank - 2; axis >= 0; --axis) {
            ++counter[axis];
            for (int k = 0; k < N; ++k) base[k] += strides[k][axis];
            if (counter[axis] < out.d[axis]) break;
            for (int k = 0; k < N; ++k) base[k] -= strides[k][axis] * out.d[axis];
            counter[axis] = 0;
        }
    }
}

template <class TA, class TB, class TO, class F>
void binary_loop(const TA* a, const Shape& sa, const TB* b, const Shape& sb, TO* o, const Shape& so, F f) {
    int64_t n = so.numel();
    if (sa == so && sb == so) {
        for (int64_t k = 0; k < n; ++k) o[k] = f(a[k], b[k]);
    } else if (sb.numel() == 1 && sa == so) {
        TB y = b[0];
        for (int64_t k = 0; k < n; ++k) o[k] = f(a[k], y);
    } else if (sa.numel() == 1 && sb == so) {
        TA x = a[0];
        for (int64_t k = 0; k < n; ++k) o[k] = f(x, b[k]);
    } else {
        const Shape* ins[2] = {&sa, &sb};
        for_each_broadcast<2>(so, ins, [&](int64_t k, const int64_t* off) { o[k] = f(a[off[0]], b[off[1]]); });
    }
}

// onnxruntime's broadcast loop treats an input as a per-span scalar when it is broadcast along the innermost
// output axis whose size is > 1 (or when every output axis is 1); Pow uses x*x / x*x*x only for a scalar
// exponent span, and std::pow otherwise.
bool innermost_broadcast(const Shape& in, const Shape& out) {
    int axis = out.rank - 1;
    while (axis >= 0 && out.d[axis] == 1) --axis;
    if (axis < 0) return true;
    int k = axis - (out.rank - in.rank);
    return k < 0 || in.d[k] == 1;
}

enum class Bin { Add, Sub, Mul, Div, Pow, Max, Min, Less, LessOrEqual, Greater, Equal, Or };

// The comparisons, as ONNX's bool tensors (0/1 in int64 storage).
template <class T>
void compare(Bin kind, const T* x, const Shape& sx, const T* y, const Shape& sy, int64_t* o, const Shape& so) {
    switch (kind) {
        case Bin::Less: binary_loop(x, sx, y, sy, o, so, [](T p, T q) -> int64_t { return p < q; }); break;
        case Bin::LessOrEqual: binary_loop(x, sx, y, sy, o, so, [](T p, T q) -> int64_t { return p <= q; }); break;
        case Bin::Greater: binary_loop(x, sx, y, sy, o, so, [](T p, T q) -> int64_t { return p > q; }); break;
        default: binary_loop(x, sx, y, sy, o, so, [](T p, T q) -> int64_t { return p == q; }); break;
    }
}

bool binary(const Step& step, Bin kind, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    const Value& b = v[step.in[1]];
    Value& o = v[step.out];
    Shape shape;
    const Shape* shapes[2] = {&a.shape, &b.shape};
    if (!broadcast_shape(shapes, 2, shape)) return fail(error, "shapes do not broadcast");
    bool comparison = kind == Bin::Less || kind == Bin::LessOrEqual || kind == Bin::Greater || kind == Bin::Equal ||
                      kind == Bin::Or;
    if (kind == Bin::Or) {
        if (a.dtype != DType::Bool || b.dtype != DType::Bool) return fail(error, "Or needs bool inputs");
    } else if (kind == Bin::Pow) {
        if (a.dtype != DType::F32) return fail(error, "Pow needs a float base");
    } else if (a.dtype != b.dtype || a.dtype == DType::Bool) {
        return fail(error, "input types differ or are bool");
    }
    DType out_type = comparison ? DType::Bool : a.dtype;
    if (!prepare_output(o, out_type, shape, grow, error)) return false;
    if (kind == Bin::Or) {
        binary_loop(a.ip(), a.shape, b.ip(), b.shape, o.ip(), shape,
                    [](int64_t x, int64_t y) -> int64_t { return (x || y) ? 1 : 0; });
        return true;
    }
    if (kind == Bin::Pow) {
        bool scalar_base = innermost_broadcast(a.shape, shape);
        bool scalar_exponent = !scalar_base && innermost_broadcast(b.shape, shape);
        auto power = [scalar_exponent](float x, float y) -> float {
            if (scalar_exponent) {
                if (y == 2.0f) return x * x;
                if (y == 3.0f) return x * x * x;
            }
            return std::pow(x, y);
        };
        if (b.dtype == DType::F32) {
            binary_loop(a.fp(), a.shape, b.fp(), b.shape, o.fp(), shape, power);
        } else {
            binary_loop(a.fp(), a.shape, b.ip(), b.shape, o.fp(), shape,
                        [&](float x, int64_t y) -> float {
                            if (scalar_exponent && (y == 2 || y == 3)) return y == 2 ? x * x : x * x * x;
                            return float(std::pow(double(x), double(y)));
                        });
        }
        return true;
    }
    if (a.dtype == DType::F32) {
        const float* x = a.fp();
        const float* y = b.fp();
        switch (kind) {
            case Bin::Add: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return p + q; }); break;
            case Bin::Sub: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return p - q; }); break;
            case Bin::Mul: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return p * q; }); break;
            case Bin::Div: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return p / q; }); break;
            case Bin::Max: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return p < q ? q : p; }); break;
            case Bin::Min: binary_loop(x, a.shape, y, b.shape, o.fp(), shape, [](float p, float q) { return q < p ? q : p; }); break;
            case Bin::Less:
            case Bin::LessOrEqual:
            case Bin::Greater:
            case Bin::Equal: compare(kind, x, a.shape, y, b.shape, o.ip(), shape); break;
            default: return fail(error, "unsupported float operation");
        }
        return true;
    }
    const int64_t* x = a.ip();
    const int64_t* y = b.ip();
    bool bad_division = false;
    switch (kind) {
        case Bin::Add: binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [](int64_t p, int64_t q) { return p + q; }); break;
        case Bin::Sub: binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [](int64_t p, int64_t q) { return p - q; }); break;
        case Bin::Mul: binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [](int64_t p, int64_t q) { return p * q; }); break;
        case Bin::Div:
            binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [&](int64_t p, int64_t q) -> int64_t {
                if (q == 0) {
                    bad_division = true;
                    return 0;
                }
                return p / q;
            });
            if (bad_division) return fail(error, "integer division by zero");
            break;
        case Bin::Max: binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [](int64_t p, int64_t q) { return std::max(p, q); }); break;
        case Bin::Min: binary_loop(x, a.shape, y, b.shape, o.ip(), shape, [](int64_t p, int64_t q) { return std::min(p, q); }); break;
        case Bin::Less:
        case Bin::LessOrEqual:
        case Bin::Greater:
        case Bin::Equal: compare(kind, x, a.shape, y, b.shape, o.ip(), shape); break;
        default: return fail(error, "unsupported integer operation");
    }
    return true;
}

using ArrayFunction = void (*)(const float*, float*, int64_t);

bool unary_array(const Step& step, std::vector<Value>& v, bool grow, const char*& error, ArrayFunction f) {
    const Value& a = v[step.in[0]];
    Value& o = v[step.out];
    if (a.dtype != DType::F32) return fail(error, "needs a float input");
    if (!prepare_output(o, DType::F32, a.shape, grow, error)) return false;
    f(a.fp(), o.fp(), a.shape.numel());
    return true;
}

template <class F>
bool unary(const Step& step, std::vector<Value>& v, bool grow, const char*& error, F f) {
    const Value& a = v[step.in[0]];
    Value& o = v[step.out];
    if (a.dtype != DType::F32) return fail(error, "needs a float input");
    if (!prepare_output(o, DType::F32, a.shape, grow, error)) return false;
    int64_t n = a.shape.numel();
    const float* x = a.fp();
    float* y = o.fp();
    for (int64_t k = 0; k < n; ++k) y[k] = f(x[k]);
    return true;
}

// Copy any-typed element `from` of `src` to element `to` of `dst` (same dtype).
inline void copy_element(const Value& src, int64_t from, Value& dst, int64_t to) {
    if (src.dtype == DType::F32) {
        dst.f[size_t(to)] = src.f[size_t(from)];
    } else {
        dst.i[size_t(to)] = src.i[size_t(from)];
    }
}

// Read a 1-D int64 tensor (shape arguments) into `out`; false if not int64 or too long.
bool read_ints(const Value& value, int64_t* out, int& count, int max_count) {
    if (value.dtype != DType::I64 || value.shape.rank > 1) return false;
    int64_t n = value.shape.numel();
    if (n > max_count) return false;
    for (int64_t k = 0; k < n; ++k) out[k] = value.i[size_t(k)];
    count = int(n);
    return true;
}

// ---- shape and data movement ops -----------------------------------------------------------------------

bool op_shape(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int rank = a.shape.rank;
    int64_t start = step.start < 0 ? std::max<int64_t>(0, step.start + rank) : std::min<int64_t>(step.start, rank);
    int64_t end = step.has_end ? (step.end < 0 ? std::max<int64_t>(0, step.end + rank) : std::min<int64_t>(step.end, rank))
                               : rank;
    if (end < start) end = start;
    Shape s;
    s.rank = 1;
    s.d[0] = end - start;
    Value& o = v[step.out];
    if (!prepare_output(o, DType::I64, s, grow, error)) return false;
    for (int64_t k = start; k < end; ++k) o.i[size_t(k - start)] = a.shape.d[k];
    return true;
}

bool op_reshape(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int64_t dims[kMaxRank];
    int count = 0;
    if (!read_ints(v[step.in[1]], dims, count, kMaxRank)) return fail(error, "Reshape: bad shape tensor");
    Shape s;
    s.rank = count;
    int infer = -1;
    int64_t known = 1;
    for (int k = 0; k < count; ++k) {
        int64_t d = dims[k];
        if (d == 0 && !step.allowzero) {
            if (k >= a.shape.rank) return fail(error, "Reshape: 0 refers to a missing axis");
            d = a.shape.d[k];
        }
        if (d == -1) {
            if (infer >= 0) return fail(error, "Reshape: more than one -1");
            infer = k;
            d = 1;
        } else if (d < 0) {
            return fail(error, "Reshape: negative dimension");
        }
        s.d[k] = d;
        known *= d;
    }
    int64_t n = a.shape.numel();
    if (infer >= 0) {
        if (known == 0 || n % known) return fail(error, "Reshape: cannot infer the -1 dimension");
        s.d[infer] = n / known;
    } else if (known != n) {
        return fail(error, "Reshape: element count differs");
    }
    Value& o = v[step.out];
    if (!prepare_output(o, a.dtype, s, grow, error)) return false;
    if (a.dtype == DType::F32) {
        std::memmove(o.fp(), a.fp(), size_t(n) * sizeof(float));
    } else {
        std::memmove(o.ip(), a.ip(), size_t(n) * sizeof(int64_t));
    }
    return true;
}

bool op_unsqueeze(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int64_t axes[kMaxRank];
    int count = 0;
    if (!read_ints(v[step.in[1]], axes, count, kMaxRank)) return fail(error, "Unsqueeze: bad axes");
    int rank = a.shape.rank + count;
    if (rank > kMaxRank) return fail(error, "Unsqueeze: rank too large");
    bool inserted[kMaxRank] = {};
    for (int k = 0; k < count; ++k) {
        int64_t axis = normalise_axis(axes[k], rank);
        if (axis < 0 || axis >= rank || inserted[axis]) return fail(error, "Unsqueeze: bad axes");
        inserted[axis] = true;
    }
    Shape s;
    s.rank = rank;
    for (int axis = 0, k = 0; axis < rank; ++axis) s.d[axis] = inserted[axis] ? 1 : a.shape.d[k++];
    Value& o = v[step.out];
    if (!prepare_output(o, a.dtype, s, grow, error)) return false;
    int64_t n = a.shape.numel();
    if (a.dtype == DType::F32) {
        std::memmove(o.fp(), a.fp(), size_t(n) * sizeof(float));
    } else {
        std::memmove(o.ip(), a.ip(), size_t(n) * sizeof(int64_t));
    }
    return true;
}

bool op_concat(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& first = v[step.in[0]];
    int rank = first.shape.rank;
    int64_t axis = normalise_axis(step.axis, rank);
    if (axis < 0 || axis >= rank) return fail(error, "Concat: bad axis");
    Shape s = first.shape;
    s.d[axis] = 0;
    for (int index : step.in) {
        const Value& x = v[index];
        if (x.dtype != first.dtype || x.shape.rank != rank) return fail(error, "Concat: inputs differ in type or rank");
        for (int k = 0; k < rank; ++k)
            if (k != axis && x.shape.d[k] != first.shape.d[k]) return fail(error, "Concat: shapes differ");
        s.d[axis] += x.shape.d[axis];
    }
    Value& o = v[step.out];
    if (!prepare_output(o, first.dtype, s, grow, error)) return false;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < axis; ++k) outer *= s.d[k];
    for (int k = int(axis) + 1; k < rank; ++k) inner *= s.d[k];
    int64_t out_row = s.d[axis] * inner;
    int64_t offset = 0;
    for (int index : step.in) {
        const Value& x = v[index];
        int64_t row = x.shape.d[axis] * inner;
        for (int64_t r = 0; r < outer; ++r) {
            if (first.dtype == DType::F32) {
                std::memcpy(o.fp() + r * out_row + offset, x.fp() + r * row, size_t(row) * sizeof(float));
            } else {
                std::memcpy(o.ip() + r * out_row + offset, x.ip() + r * row, size_t(row) * sizeof(int64_t));
            }
        }
        offset += row;
    }
    return true;
}

bool op_gather(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& data = v[step.in[0]];
    const Value& indices = v[step.in[1]];
    if (indices.dtype != DType::I64) return fail(error, "Gather: indices must be int64");
    int rank = data.shape.rank;
    int64_t axis = normalise_axis(step.axis, rank);
    if (axis < 0 || axis >= rank) return fail(error, "Gather: bad axis");
    Shape s;
    s.rank = rank - 1 + indices.shape.rank;
    if (s.rank > kMaxRank) return fail(error, "Gather: rank too large");
    int r = 0;
    for (int k = 0; k < axis; ++k) s.d[r++] = data.shape.d[k];
    for (int k = 0; k < indices.shape.rank; ++k) s.d[r++] = indices.shape.d[k];
    for (int k = int(axis) + 1; k < rank; ++k) s.d[r++] = data.shape.d[k];
    Value& o = v[step.out];
    if (!prepare_output(o, data.dtype, s, grow, error)) return false;
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < axis; ++k) outer *= data.shape.d[k];
    for (int k = int(axis) + 1; k < rank; ++k) inner *= data.shape.d[k];
    int64_t dim = data.shape.d[axis];
    int64_t count = indices.shape.numel();
    int64_t out_index = 0;
    for (int64_t p = 0; p < outer; ++p) {
        for (int64_t q = 0; q < count; ++q) {
            int64_t index = indices.i[size_t(q)];
            if (index < 0) index += dim;
            if (index < 0 || index >= dim) return fail(error, "Gather: index out of range");
            int64_t from = (p * dim + index) * inner;
            for (int64_t k = 0; k < inner; ++k) copy_element(data, from + k, o, out_index++);
        }
    }
    return true;
}

bool op_slice(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& data = v[step.in[0]];
    int rank = data.shape.rank;
    int64_t starts[kMaxRank], ends[kMaxRank], axes[kMaxRank], steps[kMaxRank];
    int n_starts = 0, n_ends = 0, n_axes = 0, n_steps = 0;
    if (!read_ints(v[step.in[1]], starts, n_starts, kMaxRank) || !read_ints(v[step.in[2]], ends, n_ends, kMaxRank) ||
        n_starts != n_ends)
        return fail(error, "Slice: bad starts/ends");
    bool has_axes = step.in.size() > 3 && step.in[3] >= 0;
    bool has_steps = step.in.size() > 4 && step.in[4] >= 0;
    if (has_axes) {
        if (!read_ints(v[step.in[3]], axes, n_axes, kMaxRank) || n_axes != n_starts) return fail(error, "Slice: bad axes");
    } else {
        for (int k = 0; k < n_starts; ++k) axes[k] = k;
    }
    if (has_steps) {
        if (!read_ints(v[step.in[4]], steps, n_steps, kMaxRank) || n_steps != n_starts) return fail(error, "Slice: bad steps");
    } else {
        for (int k = 0; k < n_starts; ++k) steps[k] = 1;
    }
    int64_t first[kMaxRank], stride[kMaxRank];
    Shape s = data.shape;
    for (int k = 0; k < rank; ++k) {
        first[k] = 0;
        stride[k] = 1;
    }
    bool seen[kMaxRank] = {};
    for (int k = 0; k < n_starts; ++k) {
        int64_t axis = normalise_axis(axes[k], rank);
        if (axis < 0 || axis >= rank || seen[axis]) return fail(error, "Slice: bad axes");
        seen[axis] = true;
        int64_t dim = data.shape.d[axis];
        int64_t st = steps[k];
        if (st == 0) return fail(error, "Slice: step 0");
        int64_t b = starts[k], e = ends[k];
        if (b < 0) b += dim;
        if (e < 0 && e > INT64_MIN + dim) e += dim;
        if (st > 0) {
            b = std::clamp<int64_t>(b, 0, dim);
            e = std::clamp<int64_t>(e, 0, dim);
            s.d[axis] = e > b ? (e - b + st - 1) / st : 0;
        } else {
            b = std::clamp<int64_t>(b, 0, dim - 1);
            e = std::clamp<int64_t>(e, -1, dim - 1);
            s.d[axis] = b > e ? (b - e - st - 1) / (-st) : 0;
        }
        first[axis] = b;
        stride[axis] = st;
    }
    Value& o = v[step.out];
    if (!prepare_output(o, data.dtype, s, grow, error)) return false;
    int64_t total = s.numel();
    if (total == 0) return true;
    int64_t in_strides[kMaxRank];
    int64_t acc = 1;
    for (int k = rank - 1; k >= 0; --k) {
        in_strides[k] = acc;
        acc *= data.shape.d[k];
    }
    int64_t counter[kMaxRank] = {};
    for (int64_t index = 0; index < total; ++index) {
        int64_t from = 0;
        for (int k = 0; k < rank; ++k) from += (first[k] + counter[k] * stride[k]) * in_strides[k];
        copy_element(data, from, o, index);
        for (int k = rank - 1; k >= 0; --k) {
            if (++counter[k] < s.d[k]) break;
            counter[k] = 0;
        }
    }
    return true;
}

bool op_expand(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int64_t dims[kMaxRank];
    int count = 0;
    if (!read_ints(v[step.in[1]], dims, count, kMaxRank)) return fail(error, "Expand: bad shape");
    Shape target;
    target.rank = count;
    for (int k = 0; k < count; ++k) target.d[k] = dims[k];
    Shape s;
    const Shape* shapes[2] = {&a.shape, &target};
    if (!broadcast_shape(shapes, 2, s)) return fail(error, "Expand: shapes do not broadcast");
    Value& o = v[step.out];
    if (!prepare_output(o, a.dtype, s, grow, error)) return false;
    const Shape* ins[1] = {&a.shape};
    if (a.dtype == DType::F32) {
        const float* x = a.fp();
        float* y = o.fp();
        for_each_broadcast<1>(s, ins, [&](int64_t k, const int64_t* off) { y[k] = x[off[0]]; });
    } else {
        const int64_t* x = a.ip();
        int64_t* y = o.ip();
        for_each_broadcast<1>(s, ins, [&](int64_t k, const int64_t* off) { y[k] = x[off[0]]; });
    }
    return true;
}

bool op_tile(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int64_t repeats[kMaxRank];
    int count = 0;
    if (!read_ints(v[step.in[1]], repeats, count, kMaxRank) || count != a.shape.rank) return fail(error, "Tile: bad repeats");
    Shape s = a.shape;
    for (int k = 0; k < count; ++k) {
        if (repeats[k] < 0) return fail(error, "Tile: negative repeat");
        s.d[k] = a.shape.d[k] * repeats[k];
    }
    Value& o = v[step.out];
    if (!prepare_output(o, a.dtype, s, grow, error)) return false;
    int rank = s.rank;
    int64_t total = s.numel();
    int64_t in_strides[kMaxRank];
    int64_t acc = 1;
    for (int k = rank - 1; k >= 0; --k) {
        in_strides[k] = acc;
        acc *= a.shape.d[k];
    }
    int64_t counter[kMaxRank] = {};
    for (int64_t index = 0; index < total; ++index) {
        int64_t from = 0;
        for (int k = 0; k < rank; ++k) from += (counter[k] % a.shape.d[k]) * in_strides[k];
        copy_element(a, from, o, index);
        for (int k = rank - 1; k >= 0; --k) {
            if (++counter[k] < s.d[k]) break;
            counter[k] = 0;
        }
    }
    return true;
}

bool op_where(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& c = v[step.in[0]];
    const Value& x = v[step.in[1]];
    const Value& y = v[step.in[2]];
    if (c.dtype != DType::Bool || x.dtype != y.dtype) return fail(error, "Where: bad input types");
    Shape s;
    const Shape* shapes[3] = {&c.shape, &x.shape, &y.shape};
    if (!broadcast_shape(shapes, 3, s)) return fail(error, "Where: shapes do not broadcast");
    Value& o = v[step.out];
    if (!prepare_output(o, x.dtype, s, grow, error)) return false;
    for_each_broadcast<3>(s, shapes, [&](int64_t k, const int64_t* off) {
        if (x.dtype == DType::F32) {
            o.f[size_t(k)] = c.i[size_t(off[0])] ? x.f[size_t(off[1])] : y.f[size_t(off[2])];
        } else {
            o.i[size_t(k)] = c.i[size_t(off[0])] ? x.i[size_t(off[1])] : y.i[size_t(off[2])];
        }
    });
    return true;
}

bool op_cast(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    Value& o = v[step.out];
    if (!prepare_output(o, step.to, a.shape, grow, error)) return false;
    int64_t n = a.shape.numel();
    for (int64_t k = 0; k < n; ++k) {
        size_t j = size_t(k);
        if (step.to == DType::F32) {
            o.f[j] = a.dtype == DType::F32 ? a.f[j] : float(a.i[j]);
        } else if (step.to == DType::I64) {
            o.i[j] = a.dtype == DType::F32 ? (std::isfinite(a.f[j]) ? int64_t(a.f[j]) : INT64_MIN) : a.i[j];
        } else {
            o.i[j] = a.dtype == DType::F32 ? int64_t(a.f[j] != 0.0f) : int64_t(a.i[j] != 0);
        }
    }
    return true;
}

// Clip of int64 tensors (an index clamped to a table's length): min/max int64 scalars.
bool op_clip_int(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    for (size_t k = 1; k < step.in.size() && k < 3; ++k) {
        if (step.in[k] < 0) continue;
        const Value& m = v[step.in[k]];
        if (m.dtype != DType::I64 || m.shape.numel() != 1) return fail(error, "Clip: min/max must be int64 scalars");
        (k == 1 ? lo : hi) = m.i[0];
    }
    Value& o = v[step.out];
    if (!prepare_output(o, DType::I64, a.shape, grow, error)) return false;
    int64_t n = a.shape.numel();
    for (int64_t k = 0; k < n; ++k) o.i[size_t(k)] = std::min(std::max(a.i[size_t(k)], lo), hi);
    return true;
}

bool op_clip(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    if (a.dtype == DType::I64) return op_clip_int(step, v, grow, error);
    if (a.dtype != DType::F32) return fail(error, "Clip: needs a float or int64 input");
    float lo = -INFINITY, hi = INFINITY;
    if (step.in.size() > 1 && step.in[1] >= 0) {
        const Value& m = v[step.in[1]];
        if (m.dtype != DType::F32 || m.shape.numel() != 1) return fail(error, "Clip: min must be a float scalar");
        lo = m.f[0];
    }
    if (step.in.size() > 2 && step.in[2] >= 0) {
        const Value& m = v[step.in[2]];
        if (m.dtype != DType::F32 || m.shape.numel() != 1) return fail(error, "Clip: max must be a float scalar");
        hi = m.f[0];
    }
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, a.shape, grow, error)) return false;
    int64_t n = a.shape.numel();
    for (int64_t k = 0; k < n; ++k) {
        float x = a.f[size_t(k)];
        x = x < lo ? lo : x;    // max(x, lo) as Eigen's cwiseMax: NaN passes through
        x = hi < x ? hi : x;
        o.f[size_t(k)] = x;
    }
    return true;
}

// True when the reduced axes are the trailing ones: each output cell is the sum of
// one contiguous row, which onnxruntime hands to Eigen's vectorised sum.
bool trailing_reduction(const Shape& shape, const bool* reduce) {
    bool seen_kept = false;
    for (int k = shape.rank - 1; k >= 0; --k) {
        if (!reduce[k]) seen_kept = true;
        else if (seen_kept) return false;
    }
    return true;
}

// Eigen's sum of x[start .. start + n) (SSE packets of 4, a tensor's buffer 16-byte aligned): the elements before
// the first aligned one and after the last whole packet are added one by one after the packets; the packets
// go into two interleaved partial sums, added together before the last odd packet, then reduced as
// (p0 + p2) + (p1 + p3).
float eigen_sum(const float* base, int64_t start, int64_t n) {
    const float* x = base + start;
    int64_t head = std::min<int64_t>((4 - start % 4) % 4, n);
    int64_t packets = (n - head) / 4;
    if (packets == 0) {
        float sum = x[0];
        for (int64_t k = 1; k < n; ++k) sum += x[k];
        return n > 0 ? sum : 0.0f;
    }
    const float* a = x + head;
    float p[4], q[4];
    for (int j = 0; j < 4; ++j) p[j] = a[j];
    if (packets > 1) {
        for (int j = 0; j < 4; ++j) q[j] = a[4 + j];
        int64_t pairs = packets / 2;
        for (int64_t i = 1; i < pairs; ++i) {
            for (int j = 0; j < 4; ++j) {
                p[j] += a[8 * i + j];
                q[j] += a[8 * i + 4 + j];
            }
        }
        for (int j = 0; j < 4; ++j) p[j] += q[j];
        if (packets % 2) {
            for (int j = 0; j < 4; ++j) p[j] += a[8 * pairs + j];
        }
    }
    float sum = (p[0] + p[2]) + (p[1] + p[3]);
    for (int64_t k = 0; k < head; ++k) sum += x[k];
    for (int64_t k = head + 4 * packets; k < n; ++k) sum += x[k];
    return sum;
}

// ReduceSum (sequential sums per output cell, in input order) and ReduceMin (exact in any order).
bool op_reduce(const Step& step, std::vector<Value>& v, bool grow, const char*& error, bool minimum) {
    const Value& a = v[step.in[0]];
    if (a.dtype != DType::F32) return fail(error, "ReduceSum/ReduceMin: needs a float input");
    int rank = a.shape.rank;
    bool reduce[kMaxRank] = {};
    int64_t axes[kMaxRank];
    int count = 0;
    if (step.in.size() > 1 && step.in[1] >= 0) {
        if (!read_ints(v[step.in[1]], axes, count, kMaxRank)) return fail(error, "ReduceSum: bad axes");
    }
    if (count == 0) {
        for (int k = 0; k < rank; ++k) reduce[k] = !step.noop_with_empty_axes;
    } else {
        for (int k = 0; k < count; ++k) {
            int64_t axis = normalise_axis(axes[k], rank);
            if (axis < 0 || axis >= rank) return fail(error, "ReduceSum: bad axes");
            reduce[axis] = true;
        }
    }
    Shape s;
    Shape kept = a.shape;   // the output shape with reduced axes as 1
    for (int k = 0; k < rank; ++k) {
        if (reduce[k]) kept.d[k] = 1;
        if (!reduce[k] || step.keepdims) s.d[s.rank++] = kept.d[k];
    }
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, s, grow, error)) return false;
    int64_t n_out = kept.numel();
    if (!minimum && trailing_reduction(a.shape, reduce)) {
        int64_t row = a.shape.numel() / std::max<int64_t>(n_out, 1);
        for (int64_t k = 0; k < n_out; ++k) o.f[size_t(k)] = eigen_sum(a.fp(), k * row, row);
        return true;
    }
    for (int64_t k = 0; k < n_out; ++k) o.f[size_t(k)] = minimum ? INFINITY : 0.0f;
    // Walk the input in order, adding each element into its output cell (sequential sums per cell).
    int64_t out_strides[kMaxRank];
    int64_t acc = 1;
    for (int k = rank - 1; k >= 0; --k) {
        out_strides[k] = reduce[k] ? 0 : acc;
        acc *= kept.d[k];
    }
    int64_t counter[kMaxRank] = {};
    int64_t total = a.shape.numel();
    for (int64_t index = 0; index < total; ++index) {
        int64_t to = 0;
        for (int k = 0; k < rank; ++k) to += counter[k] * out_strides[k];
        float x = a.f[size_t(index)];
        float& y = o.f[size_t(to)];
        if (!minimum) {
            y += x;
        } else if (x < y || std::isnan(x)) {
            y = x;
        }
        for (int k = rank - 1; k >= 0; --k) {
            if (++counter[k] < a.shape.d[k]) break;
            counter[k] = 0;
        }
    }
    return true;
}

bool op_max(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    if (step.in.size() == 2) return binary(step, Bin::Max, v, grow, error);
    if (step.in.size() != 1) return fail(error, "Max: only one or two inputs are supported");
    const Value& a = v[step.in[0]];
    Value& o = v[step.out];
    if (!prepare_output(o, a.dtype, a.shape, grow, error)) return false;
    for (int64_t k = 0; k < a.shape.numel(); ++k) copy_element(a, k, o, k);
    return true;
}

bool op_gather_elements(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& data = v[step.in[0]];
    const Value& indices = v[step.in[1]];
    if (indices.dtype != DType::I64) return fail(error, "GatherElements: indices must be int64");
    int rank = data.shape.rank;
    if (indices.shape.rank != rank) return fail(error, "GatherElements: indices and data ranks differ");
    int64_t axis = normalise_axis(step.axis, rank);
    if (axis < 0 || axis >= rank) return fail(error, "GatherElements: bad axis");
    Value& o = v[step.out];
    if (!prepare_output(o, data.dtype, indices.shape, grow, error)) return false;
    int64_t data_strides[kMaxRank];
    int64_t acc = 1;
    for (int k = rank - 1; k >= 0; --k) {
        data_strides[k] = acc;
        acc *= data.shape.d[k];
    }
    int64_t dim = data.shape.d[axis];
    int64_t counter[kMaxRank] = {};
    int64_t total = indices.shape.numel();
    for (int64_t out_index = 0; out_index < total; ++out_index) {
        int64_t index = indices.i[size_t(out_index)];
        if (index < 0) index += dim;
        if (index < 0 || index >= dim) return fail(error, "GatherElements: index out of range");
        int64_t from = 0;
        for (int k = 0; k < rank; ++k) {
            int64_t at = k == axis ? index : counter[k];
            if (at >= data.shape.d[k]) return fail(error, "GatherElements: indices larger than the data");
            from += at * data_strides[k];
        }
        copy_element(data, from, o, out_index);
        for (int k = rank - 1; k >= 0; --k) {
            if (++counter[k] < indices.shape.d[k]) break;
            counter[k] = 0;
        }
    }
    return true;
}

// Softmax as onnxruntime's MLAS kernel computes it (AVX-512 path): the maximum, then exp(x - max) with its
// polynomial and an exact scaling by 2^m, summed in 16 lanes (element k into lane k % 16, in order) that are then
// added pairwise, and finally every exp times 1 / sum.
float softmax_exp(float x) {
    x = x < -103.9720840454f ? -103.9720840454f : x;
    float m = __builtin_fmaf(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
    x = __builtin_fmaf(m, -6.93145752e-1f, x);
    x = __builtin_fmaf(m, -1.42860677e-6f, x);
    float p = 0x1.694000p-10f;
    p = __builtin_fmaf(p, x, 0x1.125edcp-7f);
    p = __builtin_fmaf(p, x, 0x1.555b5ap-5f);
    p = __builtin_fmaf(p, x, 0x1.555450p-3f);
    p = __builtin_fmaf(p, x, 0x1.fffff6p-2f);
    p = __builtin_fmaf(p, x, 1.0f);
    p = __builtin_fmaf(p, x, 1.0f);
    return std::ldexp(p, int(m));   // one rounding (subnormals too), as vscalefps
}

bool op_softmax(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    if (a.dtype != DType::F32) return fail(error, "Softmax: needs a float input");
    int rank = a.shape.rank;
    int64_t axis = normalise_axis(step.axis, rank);
    if (axis < 0 || axis >= rank) return fail(error, "Softmax: bad axis");
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, a.shape, grow, error)) return false;
    int64_t outer = 1, inner = 1, dim = a.shape.d[axis];
    for (int k = 0; k < axis; ++k) outer *= a.shape.d[k];
    for (int k = int(axis) + 1; k < rank; ++k) inner *= a.shape.d[k];
    for (int64_t p = 0; p < outer; ++p) {
        for (int64_t q = 0; q < inner; ++q) {
            const float* x = a.fp() + p * dim * inner + q;
            float* y = o.fp() + p * dim * inner + q;
            float maximum = -INFINITY;
            for (int64_t k = 0; k < dim; ++k) maximum = x[k * inner] > maximum ? x[k * inner] : maximum;
            float negative = -maximum;
            float lane[16] = {};
            for (int64_t k = 0; k < dim; ++k) {
                float e = softmax_exp(x[k * inner] + negative);
                y[k * inner] = e;
                lane[k % 16] += e;
            }
            float half[8];
            for (int k = 0; k < 8; ++k) half[k] = lane[k + 8] + lane[k];
            float sum = ((half[0] + half[1]) + (half[2] + half[3])) + ((half[4] + half[5]) + (half[6] + half[7]));
            float scale = 1.0f / sum;
            for (int64_t k = 0; k < dim; ++k) y[k * inner] *= scale;
        }
    }
    return true;
}

// ---- matrix products -------------------------------------------------------------------------------------

__attribute__((target("fma"))) void matmul_fma(const float* a, int64_t a_row, int64_t a_col, const float* b,
                                                int64_t b_row, int64_t b_col, float* out, int64_t out_row,
                                                int64_t m_count, int64_t n_count, int64_t k_count, float alpha,
                                                bool accumulate) {
    for (int64_t m = 0; m < m_count; ++m) {
        for (int64_t n = 0; n < n_count; ++n) {
            float acc = 0.0f;
            const float* pa = a + m * a_row;
            const float* pb = b + n * b_col;
            for (int64_t k = 0; k < k_count; ++k) acc = __builtin_fmaf(pa[k * a_col], pb[k * b_row], acc);
            float& y = out[m * out_row + n];
            y = accumulate ? __builtin_fmaf(acc, alpha, y) : acc * alpha;
        }
    }
}

// Eight output columns at a time (AVX2) when B's columns are contiguous: every output is still its own
// sequential fused multiply-add chain over k, so the values are those of matmul_fma.
__attribute__((target("avx2,fma"), always_inline)) inline void finish8(float* y, __m256 acc, __m256 scale,
                                                                        bool accumulate) {
    _mm256_storeu_ps(y, accumulate ? _mm256_fmadd_ps(acc, scale, _mm256_loadu_ps(y)) : _mm256_mul_ps(acc, scale));
}

__attribute__((target("avx2,fma"))) void matmul_avx2(const float* a, int64_t a_row, int64_t a_col, const float* b,
                                                     int64_t b_row, float* out, int64_t out_row, int64_t m_count,
                                                     int64_t n_count, int64_t k_count, float alpha, bool accumulate) {
    const __m256 scale = _mm256_set1_ps(alpha);
    for (int64_t m = 0; m < m_count; ++m) {
        const float* pa = a + m * a_row;
        float* y = out + m * out_row;
        int64_t n = 0;
        for (; n + 32 <= n_count; n += 32) {   // four independent chains hide the FMA latency
            __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (int64_t k = 0; k < k_count; ++k) {
                __m256 x = _mm256_set1_ps(pa[k * a_col]);
                const float* pb = b + k * b_row + n;
                acc0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb), acc0);
                acc1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb + 8), acc1);
                acc2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb + 16), acc2);
                acc3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb + 24), acc3);
            }
            finish8(y + n, acc0, scale, accumulate);
            finish8(y + n + 8, acc1, scale, accumulate);
            finish8(y + n + 16, acc2, scale, accumulate);
            finish8(y + n + 24, acc3, scale, accumulate);
        }
        for (; n + 8 <= n_count; n += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t k = 0; k < k_count; ++k)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(pa[k * a_col]), _mm256_loadu_ps(b + k * b_row + n), acc);
            finish8(y + n, acc, scale, accumulate);
        }
        for (; n < n_count; ++n) {
            float acc = 0.0f;
            for (int64_t k = 0; k < k_count; ++k) acc = __builtin_fmaf(pa[k * a_col], b[k * b_row + n], acc);
            y[n] = accumulate ? __builtin_fmaf(acc, alpha, y[n]) : acc * alpha;
        }
    }
}

void matmul_plain(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_row, int64_t b_col,
                  float* out, int64_t out_row, int64_t m_count, int64_t n_count, int64_t k_count, float alpha,
                  bool accumulate) {
    for (int64_t m = 0; m < m_count; ++m) {
        for (int64_t n = 0; n < n_count; ++n) {
            float acc = 0.0f;
            const float* pa = a + m * a_row;
            const float* pb = b + n * b_col;
            for (int64_t k = 0; k < k_count; ++k) acc += pa[k * a_col] * pb[k * b_row];
            float& y = out[m * out_row + n];
            y = accumulate ? acc * alpha + y : acc * alpha;
        }
    }
}

// out (m x n) = alpha * A (m x K) B (K x n) [+ out], K in blocks of 256 like MLAS.
void matmul(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_row, int64_t b_col, float* out,
            int64_t out_row, int64_t m_count, int64_t n_count, int64_t k_count, float alpha, bool accumulate) {
    const int64_t block = 256;
    if (k_count == 0) {
        if (!accumulate)
            for (int64_t m = 0; m < m_count; ++m)
                for (int64_t n = 0; n < n_count; ++n) out[m * out_row + n] = 0.0f;
        return;
    }
    for (int64_t k0 = 0; k0 < k_count; k0 += block) {
        int64_t kn = std::min(block, k_count - k0);
        matmul_block(a + k0 * a_col, a_row, a_col, b + k0 * b_row, b_row, b_col, out, out_row, m_count, n_count, kn,
                     alpha, accumulate || k0 > 0);
    }
}

bool op_gemm(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    const Value& b = v[step.in[1]];
    if (a.dtype != DType::F32 || b.dtype != DType::F32 || a.shape.rank != 2 || b.shape.rank != 2)
        return fail(error, "Gemm: needs 2-D float inputs");
    int64_t m = step.trans_a ? a.shape.d[1] : a.shape.d[0];
    int64_t k = step.trans_a ? a.shape.d[0] : a.shape.d[1];
    int64_t kb = step.trans_b ? b.shape.d[1] : b.shape.d[0];
    int64_t n = step.trans_b ? b.shape.d[0] : b.shape.d[1];
    if (k != kb) return fail(error, "Gemm: inner dimensions differ");
    Shape s;
    s.rank = 2;
    s.d[0] = m;
    s.d[1] = n;
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, s, grow, error)) return false;
    bool has_c = step.in.size() > 2 && step.in[2] >= 0 && step.beta != 0.0f;
    if (has_c) {
        const Value& c = v[step.in[2]];
        if (c.dtype != DType::F32) return fail(error, "Gemm: C must be float");
        Shape broadcast;
        const Shape* shapes[2] = {&c.shape, &s};
        if (!broadcast_shape(shapes, 2, broadcast) || !(broadcast == s)) return fail(error, "Gemm: C does not broadcast");
        const Shape* ins[1] = {&c.shape};
        const float* cp = c.fp();
        float* y = o.fp();
        float beta = step.beta;
        for_each_broadcast<1>(s, ins, [&](int64_t j, const int64_t* off) { y[j] = beta == 1.0f ? cp[off[0]] : beta * cp[off[0]]; });
    }
    // Element (m, k) of op(A) and (k, n) of op(B) through strides.
    int64_t a_row = step.trans_a ? 1 : a.shape.d[1], a_col = step.trans_a ? a.shape.d[1] : 1;
    int64_t b_row = step.trans_b ? 1 : b.shape.d[1], b_col = step.trans_b ? b.shape.d[1] : 1;
    matmul(a.fp(), a_row, a_col, b.fp(), b_row, b_col, o.fp(), n, m, n, k, step.alpha, has_c);
    return true;
}

bool op_matmul(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const Value& a = v[step.in[0]];
    const Value& b = v[step.in[1]];
    if (a.dtype != DType::F32 || b.dtype != DType::F32 || a.shape.rank < 1 || b.shape.rank < 1)
        return fail(error, "MatMul: needs float inputs of rank >= 1");
    // Promote 1-D operands to matrices, as numpy does.
    Shape sa = a.shape, sb = b.shape;
    bool a_vector = sa.rank == 1, b_vector = sb.rank == 1;
    if (a_vector) {
        sa.rank = 2;
        sa.d[1] = sa.d[0];
        sa.d[0] = 1;
    }
    if (b_vector) {
        sb.rank = 2;
        sb.d[1] = 1;
    }
    int64_t m = sa.d[sa.rank - 2], k = sa.d[sa.rank - 1], kb = sb.d[sb.rank - 2], n = sb.d[sb.rank - 1];
    if (k != kb) return fail(error, "MatMul: inner dimensions differ");
    Shape batch_a, batch_b, batch;
    batch_a.rank = sa.rank - 2;
    batch_b.rank = sb.rank - 2;
    for (int j = 0; j < batch_a.rank; ++j) batch_a.d[j] = sa.d[j];
    for (int j = 0; j < batch_b.rank; ++j) batch_b.d[j] = sb.d[j];
    const Shape* shapes[2] = {&batch_a, &batch_b};
    if (!broadcast_shape(shapes, 2, batch)) return fail(error, "MatMul: batch dimensions do not broadcast");
    Shape s;
    s.rank = 0;
    for (int j = 0; j < batch.rank; ++j) s.d[s.rank++] = batch.d[j];
    if (!a_vector) s.d[s.rank++] = m;
    if (!b_vector) s.d[s.rank++] = n;
    if (s.rank > kMaxRank) return fail(error, "MatMul: rank too large");
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, s, grow, error)) return false;
    const float* pa = a.fp();
    const float* pb = b.fp();
    float* po = o.fp();
    const Shape* ins[2] = {&batch_a, &batch_b};
    for_each_broadcast<2>(batch, ins, [&](int64_t j, const int64_t* off) {
        matmul(pa + off[0] * m * k, k, 1, pb + off[1] * k * n, n, 1, po + j * m * n, n, m, n, k, 1.0f, false);
    });
    return true;
}

// ---- Einsum (one or two operands, explicit or implicit output) ------------------------------------------

bool op_einsum(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    const EinsumPlan& plan = step.einsum;
    int64_t size_of[128];
    for (int64_t& x : size_of) x = -1;
    Shape ellipsis;   // broadcast shape of the '...' axes
    ellipsis.rank = 0;
    const Value* operands[2] = {nullptr, nullptr};
    int ell_rank[2] = {0, 0};
    for (int p = 0; p < plan.operands; ++p) {
        const Value& x = v[step.in[p]];
        if (x.dtype != DType::F32) return fail(error, "Einsum: needs float inputs");
        operands[p] = &x;
        const std::string& term = plan.terms[p];
        int letters = int(term.size()) - (term.find('.') != std::string::npos ? 1 : 0);
        int er = x.shape.rank - letters;
        if (er < 0 || (er > 0 && term.find('.') == std::string::npos)) return fail(error, "Einsum: rank does not match the equation");
        ell_rank[p] = er;
        int axis = 0;
        for (char c : term) {
            if (c == '.') {
                Shape part;
                part.rank = er;
                for (int j = 0; j < er; ++j) part.d[j] = x.shape.d[axis + j];
                Shape merged;
                const Shape* shapes[2] = {&ellipsis, &part};
                if (!broadcast_shape(shapes, 2, merged)) return fail(error, "Einsum: '...' axes do not broadcast");
                ellipsis = merged;
                axis += er;
            } else {
                int64_t d = x.shape.d[axis++];
                int64_t& known = size_of[int(c)];
                if (known >= 0 && known != d) return fail(error, "Einsum: a letter has two sizes");
                known = d;
            }
        }
    }
    // Output axes: ellipsis axes where '.' stands, letters; then contraction letters.
    Shape s;
    s.rank = 0;
    int out_axes[kMaxRank];   // letter per output axis, or -1-j for ellipsis axis j
    for (char c : plan.output) {
        if (c == '.') {
            for (int j = 0; j < ellipsis.rank; ++j) {
                if (s.rank >= kMaxRank) return fail(error, "Einsum: rank too large");
                out_axes[s.rank] = -1 - j;
                s.d[s.rank++] = ellipsis.d[j];
            }
        } else {
            if (s.rank >= kMaxRank || size_of[int(c)] < 0) return fail(error, "Einsum: bad output term");
            out_axes[s.rank] = c;
            s.d[s.rank++] = size_of[int(c)];
        }
    }
    char sum_letters[16];
    int n_sum = 0;
    for (int c = 'A'; c <= 'z'; ++c) {
        if (size_of[c] < 0 || plan.output.find(char(c)) != std::string::npos) continue;
        if (n_sum >= 16) return fail(error, "Einsum: too many letters");
        sum_letters[n_sum++] = char(c);
    }
    Value& o = v[step.out];
    if (!prepare_output(o, DType::F32, s, grow, error)) return false;
    // Strides of every operand per letter and per ellipsis axis.
    int64_t letter_stride[2][128];
    int64_t ell_stride[2][kMaxRank];
    for (int p = 0; p < plan.operands; ++p) {
        for (int64_t& x : letter_stride[p]) x = 0;
        for (int64_t& x : ell_stride[p]) x = 0;
        const Shape& shape = operands[p]->shape;
        int64_t strides[kMaxRank];
        int64_t acc = 1;
        for (int k = shape.rank - 1; k >= 0; --k) {
            strides[k] = shape.d[k] == 1 ? 0 : acc;
            acc *= shape.d[k];
        }
        int axis = 0;
        for (char c : plan.terms[p]) {
            if (c == '.') {
                int offset = ellipsis.rank - ell_rank[p];
                for (int j = 0; j < ell_rank[p]; ++j) ell_stride[p][offset + j] = strides[axis + j];
                axis += ell_rank[p];
            } else {
                letter_stride[p][int(c)] += strides[axis++];
            }
        }
    }
    int64_t sum_total = 1;
    for (int j = 0; j < n_sum; ++j) sum_total *= size_of[int(sum_letters[j])];
    bool fma = cpu::fma();
    int64_t out_counter[kMaxRank] = {};
    int64_t total = s.numel();
    for (int64_t index = 0; index < total; ++index) {
        int64_t base[2] = {0, 0};
        for (int k = 0; k < s.rank; ++k) {
            for (int p = 0; p < plan.operands; ++p) {
                int c = out_axes[k];
                base[p] += out_counter[k] * (c < 0 ? ell_stride[p][-1 - c] : letter_stride[p][c]);
            }
        }
        float acc = 0.0f;
        int64_t sum_counter[16] = {};
        for (int64_t t = 0; t < sum_total; ++t) {
            int64_t off[2] = {base[0], base[1]};
            for (int j = 0; j < n_sum; ++j)
                for (int p = 0; p < plan.operands; ++p) off[p] += sum_counter[j] * letter_stride[p][int(sum_letters[j])];
            float x = operands[0]->f[size_t(off[0])];
            if (plan.operands == 2) {
                float y = operands[1]->f[size_t(off[1])];
                acc = fma ? std::fma(x, y, acc) : acc + x * y;
            } else {
                acc += x;
            }
            for (int j = n_sum - 1; j >= 0; --j) {
                if (++sum_counter[j] < size_of[int(sum_letters[j])]) break;
                sum_counter[j] = 0;
            }
        }
        o.f[size_t(index)] = acc;
        for (int k = s.rank - 1; k >= 0; --k) {
            if (++out_counter[k] < s.d[k]) break;
            out_counter[k] = 0;
        }
    }
    return true;
}

}  // namespace

void matmul_block(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t b_row, int64_t b_col,
                  float* out, int64_t out_row, int64_t m_count, int64_t n_count, int64_t k_count, float alpha,
                  bool accumulate) {
    if (b_col == 1 && n_count >= 8 && cpu::avx2()) {
        matmul_avx2(a, a_row, a_col, b, b_row, out, out_row, m_count, n_count, k_count, alpha, accumulate);
    } else if (cpu::fma()) {
        matmul_fma(a, a_row, a_col, b, b_row, b_col, out, out_row, m_count, n_count, k_count, alpha, accumulate);
    } else {
        matmul_plain(a, a_row, a_col, b, b_row, b_col, out, out_row, m_count, n_count, k_count, alpha, accumulate);
    }
}

bool run_step(const Step& step, std::vector<Value>& v, bool grow, const char*& error) {
    switch (step.op) {
        case Op::Abs: return unary(step, v, grow, error, [](float x) { return std::fabs(x); });
        case Op::Neg: return unary(step, v, grow, error, [](float x) { return -x; });
        case Op::Exp: return unary_array(step, v, grow, error, ortm::exp);
        case Op::Log: return unary_array(step, v, grow, error, ortm::log);
        case Op::Sqrt: return unary(step, v, grow, error, [](float x) { return std::sqrt(x); });
        case Op::Tanh: return unary_array(step, v, grow, error, ortm::tanh);
        case Op::Erf: return unary_array(step, v, grow, error, ortm::erf);
        case Op::Cos: return unary_array(step, v, grow, error, ortm::cos);
        case Op::Sin: return unary_array(step, v, grow, error, ortm::sin);
        case Op::Add: return binary(step, Bin::Add, v, grow, error);
        case Op::Sub: return binary(step, Bin::Sub, v, grow, error);
        case Op::Mul: return binary(step, Bin::Mul, v, grow, error);
        case Op::Div: return binary(step, Bin::Div, v, grow, error);
        case Op::Pow: return binary(step, Bin::Pow, v, grow, error);
        case Op::Less: return binary(step, Bin::Less, v, grow, error);
        case Op::Equal: return binary(step, Bin::Equal, v, grow, error);
        case Op::Or: return binary(step, Bin::Or, v, grow, error);
        case Op::Max: return op_max(step, v, grow, error);
        case Op::Where: return op_where(step, v, grow, error);
        case Op::Cast: return op_cast(step, v, grow, error);
        case Op::Clip: return op_clip(step, v, grow, error);
        case Op::Concat: return op_concat(step, v, grow, error);
        case Op::Gather: return op_gather(step, v, grow, error);
        case Op::Slice: return op_slice(step, v, grow, error);
        case Op::Expand: return op_expand(step, v, grow, error);
        case Op::Tile: return op_tile(step, v, grow, error);
        case Op::Reshape: return op_reshape(step, v, grow, error);
        case Op::Unsqueeze: return op_unsqueeze(step, v, grow, error);
        case Op::Shape: return op_shape(step, v, grow, error);
        case Op::ReduceSum: return op_reduce(step, v, grow, error, false);
        case Op::ReduceMin: return op_reduce(step, v, grow, error, true);
        case Op::Softmax: return op_softmax(step, v, grow, error);
        case Op::GatherElements: return op_gather_elements(step, v, grow, error);
        case Op::Floor: return unary(step, v, grow, error, [](float x) { return std::floor(x); });
        case Op::Relu: return unary(step, v, grow, error, [](float x) { return x < 0.0f ? 0.0f : x; });
        case Op::Min: return binary(step, Bin::Min, v, grow, error);
        case Op::LessOrEqual: return binary(step, Bin::LessOrEqual, v, grow, error);
        case Op::Greater: return binary(step, Bin::Greater, v, grow, error);
        case Op::Gemm: return op_gemm(step, v, grow, error);
        case Op::MatMul: return op_matmul(step, v, grow, error);
        case Op::Einsum: return op_einsum(step, v, grow, error);
        case Op::Identity: {
            const Value& a = v[step.in[0]];
            Value& o = v[step.out];
            if (!prepare_output(o, a.dtype, a.shape, grow, error)) return false;
            for (int64_t k = 0; k < a.shape.numel(); ++k) copy_element(a, k, o, k);
            return true;
        }
        case Op::Constant: return true;
    }
    return fail(error, "unknown op");
}

}  // namespace eigentone
