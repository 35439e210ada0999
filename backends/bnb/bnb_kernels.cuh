#pragma once
/// Launchers of the bitsandbytes-style kernels (one file per op: bnb_quantize.cu, bnb_dequantize.cu,
/// bnb_gemv_4bit.cu, bnb_int8.cu). Device pointers throughout; every launcher enqueues on o.stream (with
/// programmatic dependent launch when o.pdl) and checks the launch. Storage layouts: bnb_format.hpp.
#include "backends/bnb/bnb_format.hpp"
#include "cuda/launch.cuh"

#include <cublasLt.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace qbench::bnb {

/// A 4-bit weight resident on the GPU, passed to kernels by value.
struct device_4bit_view {
    const std::uint8_t* packed = nullptr;       ///< (rows*cols+1)/2 bytes
    std::int64_t rows = 0;                      ///< N
    std::int64_t cols = 0;                      ///< K
    int blocksize_log2 = 6;
    const float* absmax = nullptr;              ///< plain absmax per block; nullptr when double-quantized
    const std::uint8_t* absmax_codes = nullptr; ///< nested: one code per block
    const float* nested_absmax = nullptr;       ///< nested: one per nested block
    const float* nested_code = nullptr;         ///< nested: the 256-entry dynamic map
    int nested_blocksize = 256;
    float nested_offset = 0.0f;
    float code[16] = {};                        ///< the quant map

    bool nested() const { return absmax == nullptr; }
};

// ---- load-time quantization (bnb_quantize.cu) --------------------------------------------------------------------

/// Blockwise 4-bit quantization of n fp16 values: packed[(n+1)/2], absmax[ceil(n/bs)] (fp32). Bit-exact with
/// quantize_4bit_ref: absmax = max|x|, q = tree(x * (1/absmax)).
void launch_quantize_4bit(const __half* values, std::int64_t n, quant_type type, std::int64_t blocksize,
                          std::uint8_t* packed, float* absmax, const launch_options& o);
/// offset = fp32(double sum of absmax in a fixed order / n), written to *offset (one CTA).
void launch_absmax_mean(const float* absmax, std::int64_t n, float* offset, const launch_options& o);
/// Nested 8-bit quantization of absmax - *offset: codes[n], nested_absmax[ceil(n/nested_bs)]; `code` is the
/// 256-entry dynamic map on the device. Bit-exact with double_quantize_ref given the same offset.
void launch_double_quantize(const float* absmax, std::int64_t n, const float* offset, const float* code,
                            std::int64_t nested_blocksize, std::uint8_t* codes, float* nested_absmax,
                            const launch_options& o);
/// LLM.int8() weight quantization of a [rows, cols] fp16 matrix: scb[rows], cb[rows*cols]. Bit-exact with
/// quantize_int8_ref.
void launch_quantize_int8_rows(const __half* values, std::int64_t rows, std::int64_t cols, std::int8_t* cb,
                               float* scb, const launch_options& o);

// ---- 4-bit dequantize + GEMV (bnb_dequantize.cu, bnb_gemv_4bit.cu) ---------------------------------------------

/// out[i] = fp16(code[nibble(i)] * absmax(block(i))) for all rows*cols elements (bit-exact with dequantize_4bit_ref).
void launch_dequantize_4bit(const device_4bit_view& w, __half* out, const launch_options& o);

/// Whether the fused GEMV handles this weight and batch: K % 32 == 0 (16-byte rows) and m <= k_gemv_4bit_max_rows.
inline constexpr std::int64_t k_gemv_4bit_max_rows = 8;
bool gemv_4bit_supported(const device_4bit_view& w, std::int64_t m);
/// y[m, N] = fp16( x[m, K] . W^T ) fused: dequantize in registers (code book as half2 pairs in shared memory),
/// fp32 accumulation per 8 weights and across the row; absmax and double quantization resolved in the kernel.
/// `variant` picks the kernel shape (gemv_4bit_variant_name; 0 = the default, the others for benchmarks). At m == 1
/// variants below gemv_team_configs() run the team kernel (launch_gemv_4bit_team) where it applies, else v2.
void launch_gemv_4bit(const device_4bit_view& w, const __half* x, std::int64_t m, __half* y, const launch_options& o,
                      int variant = 0);
/// "team-..." (v3, batch 1), "warp-r2-u2" (v2), "block-r2" (v1).
const char* gemv_4bit_variant_name(int variant);

// ---- batch-1 team kernels (bnb_gemv_team_4bit.cu, bnb_gemv_team_int8.cu, bnb_team_geometry.cu) -------------------

/// Launch shapes of the team kernels (4-bit and int8 tables alike): 0 is the default; the others exist for benchmarks.
inline constexpr int k_gemv_team_config_count = 8;
int gemv_team_configs();
/// Batch-1 4-bit variant ids: the team configs, then v2 ("warp-r2-u2") and v1 ("block-r2") for comparison.
inline constexpr int k_gemv_4bit_v2_id = k_gemv_team_config_count, k_gemv_4bit_v1_id = k_gemv_team_config_count + 1;
inline constexpr int k_gemv_4bit_variants = k_gemv_team_config_count + 2;
const char* gemv_team_config_name(int config);
/// Whether the 4-bit team kernel handles this weight: K % 32 == 0 and K <= 16384.
bool gemv_4bit_team_supported(const device_4bit_view& w);
/// y[N] = fp16( x[K] . W^T ) for one token: each thread keeps 32 activations in registers for the whole kernel,
/// rows stream through a ring of 16-byte loads, the weights of the first rows are requested before the PDL wait.
/// Arithmetic: fp16 code book times fp16 x in half2 chains of 16 weights (8 products per half), fp32 beyond, the
/// block's absmax applied in fp32.
void launch_gemv_4bit_team(const device_4bit_view& w, const __half* x, __half* y, const launch_options& o,
                           int config = 0);
/// Groups (fusion of one layer's linears, cuda/fused_linear.hpp): up to k_team_max_members weights of one K run as one
/// team kernel whose work range is their concatenated output rows; a single weight is the group of one, so every
/// member's outputs are bit-identical to its own launch (same config).
inline constexpr int k_team_max_members = 3;
/// Whether ws[0 .. count) form a 4-bit group: each team-supported, rows >= 1, the same K, blocksize, quant map,
/// nesting and nested block size (their nested maps and offsets may differ; members whose nested_code is the same
/// pointer, as the loader makes it, read that map once per CTA), total rows in 32-bit range.
bool gemv_4bit_team_groupable(const device_4bit_view* ws, int count);
/// ys[i][N_i] = fp16( x[K] . W_i^T ) for the group ws[0 .. count) in one launch (throws std::invalid_argument if not
/// gemv_4bit_team_groupable).
void launch_gemv_4bit_team_group(const device_4bit_view* ws, int count, const __half* x, __half* const* ys,
                                 const launch_options& o, int config = 0);
/// act[N] = fp16( silu(g) * u ), g = fp16(x . gate^T), u = fp16(x . up^T), silu_times as launch_swiglu: gate and up
/// rows r are reduced in one team and paired in its epilogue. gate and up must be groupable with equal N.
void launch_gemv_4bit_team_swiglu(const device_4bit_view& gate, const device_4bit_view& up, const __half* x,
                                  __half* act, const launch_options& o, int config = 0);
/// The residual add in the epilogue (fused_linear::forward_residual, o_proj / down_proj): residual[N] =
/// fp16(residual + fp16(x . W^T)), rounded as launch_rms_norm's add, so bit-identical to launch_gemv_4bit_team into a
/// delta followed by that add. With `out` set, the launch's last CTA also writes out[N] = rms_norm(residual) * weight
/// of the updated stream, bit-identical to launch_rms_norm (forward_residual_normed): `arrivals` is a device counter
/// at zero that the launch leaves at zero again (one per weight; launches sharing one must not overlap).
struct residual_norm {
    __half* out = nullptr;
    const __half* weight = nullptr;
    double eps = 0;
    unsigned* arrivals = nullptr;
};
/// Whether launch_gemv_4bit_team_residual can form the next RMSNorm for this weight (N % 8 == 0, N <= 8192, the
/// config's CTA wide enough; throws std::invalid_argument for a config that does not exist).
bool gemv_4bit_team_norms_rows(const device_4bit_view& w, int config = 0);
void launch_gemv_4bit_team_residual(const device_4bit_view& w, const __half* x, __half* residual,
                                    const residual_norm& norm, const launch_options& o, int config = 0);
/// Launch shapes of the fused int8 GEMV (gemv_team_configs() of them; 0 is the default).
const char* gemv_int8_fused_config_name(int config);
/// Whether the fused int8 GEMV handles k: k % 32 == 0 and k <= 16384.
bool gemv_int8_fused_supported(std::int64_t k);
/// LLM.int8() for one token in one kernel: y[n] = fp16( int32(q . CB^T) * row_stat * SCB / 127^2
/// + sum over outlier columns x * CB * SCB / 127 ), where the activation quantization (row_stat over |x| < threshold,
/// q = round_half_even(x * 127 / row_stat), outlier columns |x| >= threshold zeroed) happens inside the kernel,
/// exactly as launch_quantize_int8_activations does it. threshold <= 0: no decomposition.
void launch_gemv_int8_fused(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                            float threshold, __half* y, const launch_options& o, int config = 0);

/// One int8 weight of a fused group: CB [n, k] and SCB [n].
struct int8_team_weight {
    const std::int8_t* cb = nullptr;
    const float* scb = nullptr;
    std::int64_t n = 0;
};
/// Whether ws[0 .. count) of width k form an int8 group (k fused-supported, n >= 1, total rows in 32-bit range).
bool gemv_int8_fused_groupable(const int8_team_weight* ws, int count, std::int64_t k);
/// launch_gemv_int8_fused of every member in one launch: the activation quantization and the outlier columns are
/// computed once for all (they share x and the threshold); outputs bit-identical to one launch per member.
void launch_gemv_int8_fused_group(const int8_team_weight* ws, int count, std::int64_t k, const __half* x,
                                  float threshold, __half* const* ys, const launch_options& o, int config = 0);
/// act[n] = fp16( silu(g) * u ) from the fused int8 GEMVs of gate and up (equal n), as launch_swiglu rounds it.
void launch_gemv_int8_fused_swiglu(const int8_team_weight& gate, const int8_team_weight& up, std::int64_t k,
                                   const __half* x, float threshold, __half* act, const launch_options& o,
                                   int config = 0);

// ---- LLM.int8() (bnb_int8.cu) ------------------------------------------------------------------------------------

/// Device buffers of an activation quantization for up to `capacity_rows` rows of width k.
struct int8_act_buffers {
    std::int8_t* q = nullptr;           ///< [rows, k] int8, outlier columns zeroed
    float* row_stats = nullptr;         ///< [rows]
    std::uint32_t* outlier_mask = nullptr;  ///< [ceil(k/32)] bit c%32 of word c/32 = column c is an outlier
    std::int32_t* outlier_cols = nullptr;   ///< [k] ascending outlier columns
    std::int32_t* outlier_count = nullptr;  ///< [1]
};

/// LLM.int8() activation quantization of x[m, k] with `threshold` (0 = no decomposition): row statistics over
/// |x| < threshold, outlier columns (any |x| >= threshold), q = round_half_even(x * 127 / row_stat), outlier columns
/// zeroed. Bit-exact with quantize_int8_activations_ref.
void launch_quantize_int8_activations(const __half* x, std::int64_t m, std::int64_t k, float threshold,
                                      const int8_act_buffers& buffers, const launch_options& o);

/// Whether the int8 GEMV handles k (16-byte rows: k % 16 == 0).
bool gemv_int8_supported(std::int64_t k);
inline constexpr std::int64_t k_gemv_int8_max_rows = 8;
/// y[m, N] = fp16( int32(q . CB^T) * row_stats * SCB / 127^2 + sum over outlier columns x * CB * SCB / 127 ),
/// m <= k_gemv_int8_max_rows, from quantized activations (launch_quantize_int8_activations) and the fp16 x.
/// act.outlier_mask == nullptr skips the outlier columns (threshold 0).
/// `variant` 0 = the default (block-owned row groups at m == 1, warp-owned above), 1 = block-owned (v1),
/// 2 = warp-owned (v2).
void launch_gemv_int8(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                      const int8_act_buffers& act, std::int64_t m, __half* y, const launch_options& o,
                      int variant = 0);

/// The epilogue of the int8 GEMM path: y = fp16( acc * row_stats * SCB / 127^2 + outlier part ) from an int32
/// [m, n] product, using the ordered outlier column list.
void launch_int8_gemm_epilogue(const std::int32_t* acc, const std::int8_t* cb, const float* scb, std::int64_t n,
                               std::int64_t k, const __half* x, const int8_act_buffers& act, std::int64_t m, __half* y,
                               const launch_options& o);

/// int32 acc[m, n] = q[m, k] . CB[n, k]^T, one thread per output (any shape; the fallback of the GEMM path).
void launch_int8_matmul_plain(const std::int8_t* q, const std::int8_t* cb, std::int64_t m, std::int64_t n,
                              std::int64_t k, std::int32_t* acc, const launch_options& o);

/// int32 acc[m, n] = q[m, k] . CB[n, k]^T through cuBLASLt (CUBLAS_COMPUTE_32I). Returns false, enqueueing
/// nothing, where cuBLASLt refuses (k % 4 != 0, no algorithm for the shape).
bool cublaslt_int8_gemm(cublasLtHandle_t handle, const std::int8_t* q, const std::int8_t* cb, std::int32_t* acc,
                        std::int64_t m, std::int64_t n, std::int64_t k, void* workspace, std::uint64_t workspace_bytes,
                        cudaStream_t stream);

}  // namespace qbench::bnb
