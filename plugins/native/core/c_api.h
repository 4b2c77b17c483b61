/* C API of the eigentone native core, for Python tests (ctypes) and small tools.
 *
 * Every function is safe to call with the pointers it returned; errors come back as NULL / 0 with a
 * one-line message copied into (err, err_size). et_synth_process is real-time safe like Synth::process.
 */
#ifndef EIGENTONE_C_API_H
#define EIGENTONE_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ET_API __attribute__((visibility("default")))

typedef struct et_instrument et_instrument;
typedef struct et_synth et_synth;
typedef struct et_graph et_graph;

typedef struct {
    uint32_t frame;
    uint8_t status, data1, data2;
} et_event;

/* Mirrors eigentone::SynthOptions (eigentone_core.hpp); et_options_default fills the defaults. */
typedef struct {
    double gain;
    int max_voices;
    double bend_range, release_time, decay_scale, brightness, position, position_y;
    int limiter, steal_fade;
} et_options;

ET_API const char* et_version(void);

/* ---- instruments ---- */
ET_API et_instrument* et_instrument_load(const char* path, char* err, int err_size);
ET_API void et_instrument_free(et_instrument* instrument);
/* InstrumentInfo as one JSON object; returns the length written (truncated to size - 1). */
ET_API int et_instrument_info(const et_instrument* instrument, char* out, int size);

/* ---- synth ---- */
ET_API void et_options_default(et_options* options);
ET_API et_synth* et_synth_new(const et_instrument* instrument, double sample_rate, int capacity, int block_size);
ET_API void et_synth_free(et_synth* synth);
ET_API void et_synth_set_options(et_synth* synth, const et_options* options);
ET_API void et_synth_process(et_synth* synth, const et_event* events, int n_events, float* out, int n_frames);
/* A whole stream in one call: events with absolute frames (sorted) over n_frames, cut into host buffers of
 * host_block frames (each gets the events of its span, frames made relative). For tests and tools. */
ET_API void et_synth_render(et_synth* synth, const et_event* events, int n_events, float* out, int64_t n_frames,
                            int host_block);
ET_API void et_synth_reset(et_synth* synth);
ET_API int et_synth_latency(const et_synth* synth);
ET_API int et_synth_voices(const et_synth* synth);
ET_API uint64_t et_synth_muted(const et_synth* synth);

/* Bench (`eigentone bench engine --native`): `voices` notes held (struck again when they decay away, as the
 * engine bench does), n_blocks blocks of `block` frames, paced at the block period (sleeping until each
 * deadline) when `paced`; writes each process() duration (s) into seconds[n_blocks]. Returns the re-strikes. */
ET_API int et_bench_blocks(et_synth* synth, int voices, const int* notes, int n_notes, int block, int n_blocks,
                           int paced, double* seconds);

/* ---- graphs (evaluator parity) ---- */
/* Compile serialised ONNX and plan it for batches of 1..max_batch. */
ET_API et_graph* et_graph_load(const uint8_t* onnx, size_t size, int max_batch, char* err, int err_size);
ET_API void et_graph_free(et_graph* graph);
/* input: batch rows of the input's row size (float32). Returns 1 on success, 0 on failure (et_graph_error). */
ET_API int et_graph_run(et_graph* graph, const float* input, int batch);
ET_API const char* et_graph_error(const et_graph* graph);
ET_API int et_graph_outputs(const et_graph* graph);
ET_API const char* et_graph_output_name(const et_graph* graph, int k);
/* Writes up to 8 dims; returns the rank. */
ET_API int et_graph_output_shape(const et_graph* graph, int k, int64_t* dims);
ET_API const float* et_graph_output_data(const et_graph* graph, int k);
/* Problems of a graph against the supported op subset, one per line into out; returns how many (0: supported,
 * -1: the bytes are not a decodable ONNX model, the reason in out). */
ET_API int et_check_graph(const uint8_t* onnx, size_t size, char* out, int size_out);
/* The supported ops and their attribute rules as JSON (compared with export/op_subset.py by the tests). */
ET_API const char* et_supported_ops(void);

#ifdef __cplusplus
}
#endif

#endif
