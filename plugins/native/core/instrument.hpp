// A loaded instrument (internal view of eigentone::Instrument): validated manifest, planned graphs, level gain.
#pragma once
#include <memory>
#include <string>

#include "eigentone_core.hpp"
#include "graph.hpp"

namespace eigentone {

constexpr int kGraphBatch = 16;   // rows per graph evaluation (more are evaluated in chunks)

// Indices of the excite graph's outputs (-1: absent).
struct ExciteOutputs {
    int sigma = -1, omega = -1, z0 = -1, c = -1, mod_alpha = -1, mod_beta = -1, attack = -1;
};

class Instrument {
public:
    InstrumentInfo info;
    std::unique_ptr<Graph> excite, readout;   // planned for kGraphBatch rows; each Synth works on copies
    ExciteOutputs outputs;
    double release_sigma() const;            // 1/s: 60 dB in release_time
};

// The probe note's level gain (engine/instrument.py): LEVEL / peak of the first 100 ms at 48 kHz of the
// note in the middle of the range at velocity 1, rendered in float64 by the contract's recurrence.
double level_gain(const float* sigma, const float* omega, const float* z0, const float* c, const float* mod_alpha,
                  const float* mod_beta, int modes);

}  // namespace eigentone
