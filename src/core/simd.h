// simd.h - FR_CLONES marks a hot loop function to be compiled three times (AVX-512, AVX2 + FMA,
// baseline x86-64) with the best one picked when the program loads (GCC target_clones), so
// one portable binary still uses the machine's vector width. Nothing elsewhere.
#ifndef FR_SIMD_H
#define FR_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FR_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define FR_CLONES
#endif

#endif
