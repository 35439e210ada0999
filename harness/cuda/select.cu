#include "cuda/reduce.cuh"
#include "cuda/select.cuh"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"

#include <climits>
#include <cmath>

namespace qbench {

namespace {

constexpr int k_threads = 1024;

__device__ __forceinline__ float logit_at(const __half* row, std::int64_t v) {
    const float f = __half2float(row[v]);
    return isnan(f) ? -INFINITY : f;
}

// Calls f(v, logit) for this thread's ids v = threadIdx.x + i * blockDim.x in increasing order, four loads in flight
// (a row is read by one block, so its latency, not bandwidth, is what a pass costs).
template <class F>
__device__ __forceinline__ void for_each_logit(const __half* row, std::int64_t vocab, F f) {
    const std::int64_t stride = blockDim.x;
    std::int64_t v = threadIdx.x;
    for (; v + 3 * stride < vocab; v += 4 * stride) {
        const float a = logit_at(row, v), b = logit_at(row, v + stride), c = logit_at(row, v + 2 * stride),
                    d = logit_at(row, v + 3 * stride);
        f(v, a);
        f(v + stride, b);
        f(v + 2 * stride, c);
        f(v + 3 * stride, d);
    }
    for (; v < vocab; v += stride) f(v, logit_at(row, v));
}

// (value desc, index asc): the order of every choice in generation.hpp.
__device__ __forceinline__ bool better(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

__device__ void warp_best(float& v, int& i) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, i, off);
        if (better(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

// Block-wide best (value, index); every thread gets it.
__device__ void block_best(float& v, int& i, float* sv, int* si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    warp_best(v, i);
    __syncthreads();
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    v = lane < warps ? sv[lane] : -INFINITY;
    i = lane < warps ? si[lane] : INT_MAX;
    warp_best(v, i);
}

__device__ double block_sum_f64(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// log_softmax normalizer of a row as decoding.hpp computes it: max, then log(sum(exp(l - max))) in double.
// Returns the log-sum; `mx` gets the max. Every thread gets both.
// `known_max`: the row's max when the caller has it already (NaN: compute it).
__device__ double row_logsum(const __half* row, std::int64_t vocab, float& mx, float* fs, double* ds,
                             float known_max = NAN) {
    float m = known_max;
    if (isnan(m)) {
        m = -INFINITY;
        for_each_logit(row, vocab, [&](std::int64_t, float f) { m = fmaxf(m, f); });
        m = block_max(m, fs);
    }
    double sum = 0.0;
    for_each_logit(row, vocab, [&](std::int64_t, float f) {
        if (f != -INFINITY) sum += exp(static_cast<double>(f) - static_cast<double>(m));
    });
    sum = block_sum_f64(sum, ds);
    mx = m;
    return log(sum);
}

__device__ unsigned long long block_sum_u64(unsigned long long v, unsigned long long* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0ull;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Logits per thread the one-pass greedy choice keeps in registers (vocabularies up to 32768).
constexpr int k_greedy_per_thread = 32;

__global__ void __launch_bounds__(k_threads) choose_greedy_kernel(const __half* logits, std::int64_t vocab,
                                                                 decode_state s) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    pdl_wait();
    pdl_trigger();
    const int step = *s.step;
    for (std::int64_t b = 0; b < s.beams; ++b) {
        const __half* row = logits + b * vocab;
        float bv = -INFINITY;
        int bi = INT_MAX;
        float mx;
        double logsum;
        if (vocab <= static_cast<std::int64_t>(k_threads) * k_greedy_per_thread) {
            // One pass: the thread's logits stay in registers for the max and the log-sum (all its loads in
            // flight at once); same per-thread order and reductions as the two-pass path, so the same bits.
            float f[k_greedy_per_thread];
#pragma unroll
            for (int i = 0; i < k_greedy_per_thread; ++i) {
                const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_threads;
                f[i] = v < vocab ? logit_at(row, v) : -INFINITY;
            }
#pragma unroll
            for (int i = 0; i < k_greedy_per_thread; ++i) {
                const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_threads;
                if (v < vocab && (bi == INT_MAX || f[i] > bv)) {
                    bv = f[i];
                    bi = static_cast<int>(v);
                }
            }
            block_best(bv, bi, sv, si);
            mx = bv;
            double sum = 0.0;
#pragma unroll
            for (int i = 0; i < k_greedy_per_thread; ++i) {
                const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_threads;
                if (v < vocab && f[i] != -INFINITY) sum += exp(static_cast<double>(f[i]) - static_cast<double>(mx));
            }
            logsum = log(block_sum_f64(sum, sd));
        } else {
            // Each thread sees increasing ids, so a strict > keeps the lowest id among equal values.
            for_each_logit(row, vocab, [&](std::int64_t v, float f) {
                if (bi == INT_MAX || f > bv) {
                    bv = f;
                    bi = static_cast<int>(v);
                }
            });
            block_best(bv, bi, sv, si);
            logsum = row_logsum(row, vocab, mx, sv, sd, bv);
        }
        if (threadIdx.x == 0) {
            const int token = bi == INT_MAX ? 0 : bi;
            s.tokens[b] = token;
            s.hist_tokens[step * s.beams + b] = token;
            s.hist_parents[step * s.beams + b] = static_cast<std::int32_t>(b);
            s.scores[b] += (static_cast<double>(logit_at(row, token)) - mx) - logsum;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        *s.pos += 1;
        *s.step = step + 1;
    }
}

// Multi-block greedy: block (x, b) takes a contiguous slice of row b; see select.cuh.
constexpr int k_greedy_split_threads = 256;

__global__ void __launch_bounds__(k_greedy_split_threads) choose_greedy_split_kernel(const __half* logits,
                                                                                    std::int64_t vocab,
                                                                                    decode_state s) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    __shared__ bool last;
    pdl_wait();
    pdl_trigger();
    const int blocks = static_cast<int>(gridDim.x);
    const std::int64_t b = blockIdx.y;
    const __half* row = logits + b * vocab;
    const std::int64_t per = (vocab + blocks - 1) / blocks;
    const std::int64_t lo = static_cast<std::int64_t>(blockIdx.x) * per;
    const std::int64_t hi = lo + per < vocab ? lo + per : vocab;
    const std::int64_t stride = blockDim.x;
    // Pass 1: best (value desc, id asc) of the slice; each thread sees increasing ids, four loads in flight.
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (std::int64_t v0 = lo + threadIdx.x; v0 < hi; v0 += 4 * stride) {
        float f[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) f[u] = v0 + u * stride < hi ? logit_at(row, v0 + u * stride) : -INFINITY;
#pragma unroll
        for (int u = 0; u < 4; ++u)
            if (v0 + u * stride < hi && (bi == INT_MAX || f[u] > bv)) {
                bv = f[u];
                bi = static_cast<int>(v0 + u * stride);
            }
    }
    block_best(bv, bi, sv, si);
    // Pass 2 (L1 hits): sum of exp(l - best of the slice) in double.
    double sum = 0.0;
    for (std::int64_t v0 = lo + threadIdx.x; v0 < hi; v0 += 4 * stride) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const std::int64_t v = v0 + u * stride;
            if (v < hi) {
                const float f = logit_at(row, v);
                if (f != -INFINITY) sum += exp(static_cast<double>(f) - static_cast<double>(bv));
            }
        }
    }
    sum = block_sum_f64(sum, sd);
    if (threadIdx.x == 0) {
        const std::int64_t at = b * k_greedy_blocks + blockIdx.x;
        s.greedy_max[at] = bv;
        s.greedy_idx[at] = bi;
        s.greedy_sum[at] = sum;
        __threadfence();  // partials visible before the arrival is counted
        const unsigned ticket = atomicAdd(s.greedy_arrived, 1u);
        last = ticket == gridDim.x * gridDim.y - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    const int step = *s.step;
    for (std::int64_t r = 0; r < static_cast<std::int64_t>(gridDim.y); ++r) {
        const std::int64_t base = r * k_greedy_blocks;
        const bool mine = static_cast<int>(threadIdx.x) < blocks;
        // L2 reads (__ldcg): the partials were written by other blocks.
        float m = mine ? __ldcg(s.greedy_max + base + threadIdx.x) : -INFINITY;
        int mi = mine ? __ldcg(s.greedy_idx + base + threadIdx.x) : INT_MAX;
        const double ps = mine ? __ldcg(s.greedy_sum + base + threadIdx.x) : 0.0;
        const float pm = m;
        block_best(m, mi, sv, si);
        const double part = mine && pm != -INFINITY ? ps * exp(static_cast<double>(pm) - static_cast<double>(m)) : 0.0;
        const double total = block_sum_f64(part, sd);
        if (threadIdx.x == 0) {
            const __half* lrow = logits + r * vocab;
            const int token = mi == INT_MAX ? 0 : mi;
            s.tokens[r] = token;
            s.hist_tokens[step * s.beams + r] = token;
            s.hist_parents[step * s.beams + r] = static_cast<std::int32_t>(r);
            s.scores[r] += (static_cast<double>(logit_at(lrow, token)) - m) - log(total);
        }
    }
    if (threadIdx.x == 0) {
        *s.pos += 1;
        *s.step = step + 1;
        *s.greedy_arrived = 0u;  // ready for the next launch (the next step's graph replay)
    }
}

// ---- sampling -------------------------------------------------------------------------------------------------
//
// The spec sorts the vocabulary by probability (descending, ties by lower id). Probabilities are monotone in the
// fp16 logits, so the order is that of a 16-bit key made from the logit's bits; every filter keeps a prefix of that
// order, held as (tau, idcut): key > tau, or key == tau and id <= idcut. Masses are summed as 2^-40 fixed-point
// integers, so every sum is exact and independent of the summation order (deterministic on every GPU).

constexpr double k_mass_scale = 1099511627776.0;  // 2^40

// Order-preserving 16-bit key of an fp16 logit; -0 maps to +0; NaN is invalid.
__device__ __forceinline__ bool key_of(const __half* row, std::int64_t v, unsigned& key) {
    unsigned bits = __half_as_ushort(row[v]);
    if ((bits & 0x7c00u) == 0x7c00u && (bits & 0x03ffu) != 0) return false;  // NaN
    if ((bits & 0x7fffu) == 0) bits = 0;
    key = (bits & 0x8000u) ? (~bits & 0xffffu) : (bits | 0x8000u);
    return true;
}

struct prefix {
    unsigned tau = 0;
    std::int64_t idcut = LLONG_MAX;
};

__device__ __forceinline__ bool in_prefix(unsigned key, std::int64_t v, const prefix& p) {
    return key > p.tau || (key == p.tau && v <= p.idcut);
}

struct select_shared {
    unsigned long long hist[256];
    unsigned count[256];
    unsigned long long scratch[32];
    int scan[32];
    unsigned hi_bin, lo_bin;
    unsigned long long above;
    unsigned long long tie_rank;
    int found;
    std::int64_t result_id;
};

// First token, in (key desc, id asc) order over the prefix `keep`, whose cumulative weight exceeds `target`.
// Returns false when the prefix's total weight does not exceed the target (then nothing is cut).
template <class Weight>
__device__ bool select_first_exceeding(const __half* row, std::int64_t vocab, const prefix& keep, Weight weight,
                                       unsigned long long target, select_shared& sh, prefix& out) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0;
    __syncthreads();
    for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
        unsigned key;
        if (key_of(row, v, key) && in_prefix(key, v, keep)) atomicAdd(&sh.hist[key >> 8], weight(row, v));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long cum = 0;
        sh.found = 0;
        for (int b = 255; b >= 0; --b) {
            if (cum + sh.hist[b] > target) {
                sh.hi_bin = static_cast<unsigned>(b);
                sh.found = 1;
                break;
            }
            cum += sh.hist[b];
        }
        sh.above = cum;
    }
    __syncthreads();
    if (!sh.found) return false;
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        sh.hist[i] = 0;
        sh.count[i] = 0;
    }
    __syncthreads();
    for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
        unsigned key;
        if (key_of(row, v, key) && (key >> 8) == sh.hi_bin && in_prefix(key, v, keep)) {
            atomicAdd(&sh.hist[key & 255], weight(row, v));
            atomicAdd(&sh.count[key & 255], 1u);
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long cum = sh.above;
        for (int l = 255; l >= 0; --l) {
            if (cum + sh.hist[l] > target) {
                sh.lo_bin = static_cast<unsigned>(l);
                break;
            }
            cum += sh.hist[l];
        }
        // Tied tokens share one logit, hence one weight: which of them (in id order) crosses the target.
        const unsigned long long each = sh.hist[sh.lo_bin] / sh.count[sh.lo_bin];
        sh.tie_rank = (target - cum) / each;
        sh.result_id = -1;
    }
    __syncthreads();
    const unsigned tau = (sh.hi_bin << 8) | sh.lo_bin;
    // The tie_rank-th tie in id order: contiguous id ranges per thread, then a block scan of their tie counts.
    const std::int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
    const std::int64_t lo = static_cast<std::int64_t>(threadIdx.x) * chunk;
    const std::int64_t hi = lo + chunk < vocab ? lo + chunk : vocab;
    int mine = 0;
    for (std::int64_t v = lo; v < hi; ++v) {
        unsigned key;
        if (key_of(row, v, key) && key == tau && in_prefix(key, v, keep)) ++mine;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int incl = mine;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const int o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
    }
    if (lane == 31) sh.scan[warp] = incl;
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) {
            const int t = sh.scan[w];
            sh.scan[w] = run;
            run += t;
        }
    }
    __syncthreads();
    const unsigned long long excl = static_cast<unsigned long long>(sh.scan[warp] + incl - mine);
    if (sh.tie_rank >= excl && sh.tie_rank < excl + static_cast<unsigned long long>(mine)) {
        unsigned long long seen = excl;
        for (std::int64_t v = lo; v < hi; ++v) {
            unsigned key;
            if (key_of(row, v, key) && key == tau && in_prefix(key, v, keep)) {
                if (seen == sh.tie_rank) {
                    sh.result_id = v;
                    break;
                }
                ++seen;
            }
        }
    }
    __syncthreads();
    out.tau = tau;
    out.idcut = sh.result_id;
    __syncthreads();  // sh is reused by the next call
    return true;
}

__global__ void __launch_bounds__(k_threads) choose_sample_kernel(const __half* logits, std::int64_t vocab,
                                                                 sampling_params params, decode_state s) {
    __shared__ select_shared sh;
    __shared__ float sv[32];
    __shared__ double sd[32];
    pdl_wait();
    pdl_trigger();
    const int step = *s.step;
    for (std::int64_t b = 0; b < s.beams; ++b) {
        const __half* row = logits + b * vocab;
        float lmax = -INFINITY;
        for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) lmax = fmaxf(lmax, logit_at(row, v));
        lmax = block_max(lmax, sv);
        // decoding.hpp: scaled = l / temperature and exp(scaled - max_scaled), in double.
        const double temperature = params.temperature;
        const double zmax = static_cast<double>(lmax) / temperature;
        auto unit = [](const __half*, std::int64_t) -> unsigned long long { return 1ull; };
        auto mass = [zmax, temperature](const __half* r, std::int64_t v) -> unsigned long long {
            const double z = static_cast<double>(__half2float(r[v])) / temperature;
            return __double2ull_rz(exp(z - zmax) * k_mass_scale);
        };
        prefix keep;
        if (params.top_k > 0 && params.top_k < vocab) {
            prefix cut;
            if (select_first_exceeding(row, vocab, keep, unit, static_cast<unsigned long long>(params.top_k - 1), sh,
                                       cut))
                keep = cut;
        }
        auto kept_mass = [&]() {
            unsigned long long m = 0;
            for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
                unsigned key;
                if (key_of(row, v, key) && in_prefix(key, v, keep)) m += mass(row, v);
            }
            return block_sum_u64(m, sh.scratch);
        };
        if (params.top_p < 1.0) {
            const unsigned long long total = kept_mass();
            // Smallest prefix whose mass >= top_p * total: the first token whose cumulative mass exceeds need - 1.
            double need = ceil(params.top_p * static_cast<double>(total));
            if (need < 1.0) need = 1.0;
            prefix cut;
            if (select_first_exceeding(row, vocab, keep, mass, static_cast<unsigned long long>(need) - 1ull, sh, cut))
                keep = cut;
        }
        const unsigned long long total = kept_mass();
        const float u = uniform01(stream_key(params.seed, static_cast<std::uint64_t>(step)), static_cast<std::uint64_t>(b));
        unsigned long long target = static_cast<unsigned long long>(static_cast<double>(u) * static_cast<double>(total));
        if (target >= total && total > 0) target = total - 1;
        prefix chosen;
        const bool ok = select_first_exceeding(row, vocab, keep, mass, target, sh, chosen);
        if (threadIdx.x == 0) {
            sh.result_id = ok && chosen.idcut >= 0 ? chosen.idcut : 0;
        }
        __syncthreads();
        const int token = static_cast<int>(sh.result_id);
        float mx;
        const double logsum = row_logsum(row, vocab, mx, sv, sd);
        if (threadIdx.x == 0) {
            s.tokens[b] = token;
            s.hist_tokens[step * s.beams + b] = token;
            s.hist_parents[step * s.beams + b] = static_cast<std::int32_t>(b);
            s.scores[b] += (static_cast<double>(logit_at(row, token)) - mx) - logsum;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *s.pos += 1;
        *s.step = step + 1;
    }
}

// ---- beam search ----------------------------------------------------------------------------------------------

// Per parent row: log-sum-exp and the row's k_max_beam best (logit, token), which contain every candidate of this
// row that can make the top `beams` (candidate order within a row is logit order).
__global__ void __launch_bounds__(k_threads) beam_rows_kernel(const __half* logits, std::int64_t vocab, int beams,
                                                             decode_state s) {
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    pdl_wait();
    pdl_trigger();
    const std::int64_t r = blockIdx.x;
    const __half* row = logits + r * vocab;
    float mx;
    const double logsum = row_logsum(row, vocab, mx, sv, sd);
    float tv[k_max_beam];
    int ti[k_max_beam];
#pragma unroll
    for (int i = 0; i < k_max_beam; ++i) {
        tv[i] = -INFINITY;
        ti[i] = INT_MAX;
    }
    for_each_logit(row, vocab, [&](std::int64_t v, float f) {
        if (f == -INFINITY) return;
        if (f > tv[k_max_beam - 1]) {
            float cv = f;
            int ci = static_cast<int>(v);
#pragma unroll
            for (int i = 0; i < k_max_beam; ++i) {
                if (cv > tv[i]) {
                    const float t = tv[i];
                    const int u = ti[i];
                    tv[i] = cv;
                    ti[i] = ci;
                    cv = t;
                    ci = u;
                }
            }
        }
    });
    for (int k = 0; k < beams; ++k) {
        float bv = tv[0];
        int bi = ti[0];
        block_best(bv, bi, sv, si);
        if (ti[0] == bi && bi != INT_MAX) {  // the winner pops its head
#pragma unroll
            for (int i = 0; i + 1 < k_max_beam; ++i) {
                tv[i] = tv[i + 1];
                ti[i] = ti[i + 1];
            }
            tv[k_max_beam - 1] = -INFINITY;
            ti[k_max_beam - 1] = INT_MAX;
        }
        if (threadIdx.x == 0) {
            s.cand_logit[r * beams + k] = bv;
            s.cand_token[r * beams + k] = bi;
        }
    }
    if (threadIdx.x == 0) {
        s.row_max[r] = mx;
        s.row_logsum[r] = logsum;
    }
}

// Top `beams` of the parent_rows x beams candidates, history, slot-table reorder, advance.
__global__ void beam_select_kernel(std::int64_t vocab, int parent_rows, decode_state s) {
    __shared__ int parent[k_max_beam];
    __shared__ int token[k_max_beam];
    __shared__ double score[k_max_beam];
    pdl_wait();
    pdl_trigger();
    const int beams = static_cast<int>(s.beams);
    const int step = *s.step;
    const std::int64_t cur = *s.pos;
    if (threadIdx.x == 0) {
        double cs[k_max_beam * k_max_beam];
        long long order[k_max_beam * k_max_beam];
        bool used[k_max_beam * k_max_beam];
        const int n = parent_rows * beams;
        for (int c = 0; c < n; ++c) {
            const int r = c / beams;
            const int tok = s.cand_token[c];
            // decoding.hpp: score + ((l - max) - log_sum), in double.
            cs[c] = tok == INT_MAX ? -INFINITY
                                   : s.scores[r] + ((static_cast<double>(s.cand_logit[c]) - s.row_max[r]) - s.row_logsum[r]);
            order[c] = static_cast<long long>(r) * vocab + (tok == INT_MAX ? vocab : tok);
            used[c] = false;
        }
        for (int j = 0; j < beams; ++j) {
            int best = -1;
            for (int c = 0; c < n; ++c) {
                if (used[c]) continue;
                if (best < 0 || cs[c] > cs[best] || (cs[c] == cs[best] && order[c] < order[best])) best = c;
            }
            used[best] = true;
            parent[j] = best / beams;
            token[j] = s.cand_token[best] == INT_MAX ? 0 : s.cand_token[best];
            score[j] = cs[best];
        }
    }
    __syncthreads();
    if (threadIdx.x < beams) {
        const int j = threadIdx.x;
        s.tokens[j] = token[j];
        s.hist_tokens[step * beams + j] = token[j];
        s.hist_parents[step * beams + j] = parent[j];
        s.scores[j] = score[j];
    }
    // New beam j continues parent[j]: its positions <= cur live where the parent's did; the parent's own position
    // cur lives in the parent's slot (attention_decode wrote it there; after the prefill that is slot 0 = parent).
    const std::int64_t len = cur + 1;
    for (std::int64_t e = threadIdx.x; e < beams * len; e += blockDim.x) {
        const std::int64_t j = e / len, p = e % len;
        s.table_tmp[j * s.max_len + p] = p == cur ? parent[j] : s.slot_table[parent[j] * s.max_len + p];
    }
    __syncthreads();
    for (std::int64_t e = threadIdx.x; e < beams * len; e += blockDim.x) {
        const std::int64_t j = e / len, p = e % len;
        s.slot_table[j * s.max_len + p] = s.table_tmp[j * s.max_len + p];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        *s.pos = static_cast<std::int32_t>(cur + 1);
        *s.step = step + 1;
    }
}

}  // namespace

void launch_choose_greedy(const __half* logits, std::int64_t vocab, const decode_state& state,
                          const launch_options& o) {
    const bool split = state.greedy_max != nullptr && state.greedy_idx != nullptr && state.greedy_sum != nullptr &&
                       state.greedy_arrived != nullptr && vocab >= 64 * k_greedy_blocks &&
                       state.beams <= 65535 && vocab <= INT_MAX;
    if (split) {
        launch_kernel(choose_greedy_split_kernel, dim3(k_greedy_blocks, static_cast<unsigned>(state.beams)),
                      dim3(k_greedy_split_threads), 0, o, logits, vocab, state);
        return;
    }
    launch_kernel(choose_greedy_kernel, dim3(1), dim3(k_threads), 0, o, logits, vocab, state);
}

void launch_choose_sample(const __half* logits, std::int64_t vocab, const sampling_params& params,
                          const decode_state& state, const launch_options& o) {
    if (!(params.temperature > 0.0)) throw error("sampling needs a temperature > 0");
    launch_kernel(choose_sample_kernel, dim3(1), dim3(k_threads), 0, o, logits, vocab, params, state);
}

void launch_choose_beam(const __half* logits, std::int64_t vocab, std::int64_t parent_rows, const decode_state& state,
                        const launch_options& o) {
    if (state.beams < 1 || state.beams > k_max_beam)
        throw unsupported_error("beam width " + std::to_string(state.beams) + " is above the " +
                                std::to_string(k_max_beam) + " the GPU beam search supports");
    launch_kernel(beam_rows_kernel, dim3(static_cast<unsigned>(parent_rows)), dim3(k_threads), 0, o, logits, vocab,
                  static_cast<int>(state.beams), state);
    launch_kernel(beam_select_kernel, dim3(1), dim3(256), 0, o, vocab, static_cast<int>(parent_rows), state);
}

}  // namespace qbench
