#pragma once
// The kernel side of test_write_once.cpp: a persistent kernel whose CTAs hand each other values phase after phase
// through write_once.cuh's words (relaxed stores over an unwritten pattern, relaxed loads until written), with or
// without the relaxed grid hint before the reads, so a word read before its store landed shows up as a wrong value.
#include <cuda_runtime.h>

#include <cstdint>

namespace qbench::test {

inline constexpr int k_write_once_threads = 128;
inline constexpr int k_write_once_words = 16;  ///< words each CTA writes per phase (its first 16 threads one each)

/// The word CTA `cta` writes as its `word`-th of phase `phase`: a hash, never k_unwritten.
std::uint32_t write_once_value(int phase, int cta, int word);

/// Phases 0 .. phases-1: CTA b's first 16 threads each store one word of phase p into
/// words[(p * ctas + b) * 16 + t]; from phase 1 on, before storing, thread t reads word t of phase p - 1 from four
/// other CTAs ((b + 1), (b + ctas / 2), (b * 5 + 3), (b + 7), mod ctas) with load_written, and counts into errors[b]
/// each value that is not write_once_value's; its own store is delayed (clock spin) in some phases and CTAs, so readers
/// often arrive first. `hint`: a grid_hint_among before the reads (counter zeroed in the same stream first). `wait`
/// false: one relaxed load per word instead of load_written (the test's control: it must then see unwritten words).
/// `words` holds phases * ctas * 16 words and is set unwritten (0xff bytes) in the same stream before the launch.
/// Launched cooperatively with `ctas` CTAs of k_write_once_threads (the caller keeps ctas within what stays resident).
void launch_write_once_check(int ctas, int phases, bool hint, bool wait, unsigned* counter, std::uint32_t* words,
                             std::uint32_t* errors, cudaStream_t stream);

/// CTAs launch_write_once_check's kernel can keep resident per SM.
int write_once_check_ctas_per_sm();

}  // namespace qbench::test
