// The bnb backend inside the CUDA executor with QBENCH_NORM_IN_EPILOGUE=1 (o_proj / down_proj add into the residual
// stream and their launch's last CTA forms the next RMSNorm: fused_linear::forward_residual_normed) against the same
// executor running the RMSNorm kernels: identical tokens and bit-identical scores for greedy, sampled and beam
// generations, eager and replayed from the captured graph, for NF4 and FP4 (plain and double-quantized absmax) on a
// model with grouped attention and an intermediate width that is not a multiple of the team's CTA; and the kernel path
// that says which ran. LLM.int8() does not offer the epilogue and must keep the kernels. The beam comparisons also
// guard the batch > 1 path against overlapping forwards on the executor's side streams (it raced on bnb's shared
// dequantization buffer before device_linear::concurrent_forwards).
#include "backends/bnb/bnb_backend.hpp"
#include "../executor_switch_ab.hpp"

#include "qbench/config/cell.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace qbench;
using namespace qbench::test;

namespace {

cell_spec bnb_cell(const model_config& m, int bits, const char* type, bool dq) {
    cell_spec cell;
    cell.model = m.name;
    cell.framework = "bnb";
    cell.bits = bits;
    cell.bnb.quant_type = type;
    cell.bnb.double_quant = dq;
    cell.seed = 31;
    return cell;
}

}  // namespace

TEST_CASE("bnb: o/down forming the next RMSNorm in their launch decode bit-identically to the norm kernels",
          "[gpu][bnb][norm]") {
    const model_config m = awkward_model("bnb-epilogue-awkward");
    const auto source = make_synthetic_source(m, 31);
    const auto backend = make_bnb_backend();
    const prompt p = short_prompt(m, 31);
    struct variant {
        int bits;
        const char* type;
        bool dq;
    };
    for (const variant v : {variant{4, "nf4", false}, variant{4, "nf4", true}, variant{4, "fp4", false}, variant{8, "nf4", false}}) {
        CAPTURE(v.bits, v.type, v.dq);
        auto gpu = make_cuda_executor(m, *source, *backend, bnb_cell(m, v.bits, v.type, v.dq), shared_context());
        // Beams of two rows a step: the epilogue declines there and the kernels run.
        const switch_run off = run_with_switch(*gpu, p, "QBENCH_NORM_IN_EPILOGUE", "0", 2);
        const switch_run on = run_with_switch(*gpu, p, "QBENCH_NORM_IN_EPILOGUE", "1", 2);
        CAPTURE(off.path, on.path);
        CHECK(off.path.find("epilogue") == std::string::npos);
        if (v.bits == 4)
            CHECK(on.path.ends_with("+norm-in-epilogue"));
        else
            CHECK(on.path.find("epilogue") == std::string::npos);  // int8 declines: the kernels run
        CHECK(on.greedy.tokens == off.greedy.tokens);
        CHECK(on.greedy.beam_scores == off.greedy.beam_scores);
        CHECK(on.sample.tokens == off.sample.tokens);
        CHECK(on.sample.beam_scores == off.sample.beam_scores);
        CHECK(on.beam.beams == off.beam.beams);
        CHECK(on.beam.beam_scores == off.beam.beam_scores);
    }
}
