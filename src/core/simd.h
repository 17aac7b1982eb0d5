// simd.h - FR_CLONES marks a hot loop function to be compiled three times (x86-64-v4: AVX-512,
// x86-64-v3: AVX2 + FMA, baseline x86-64) with the best one picked when the program loads (GCC target_clones), so
// one portable binary still uses the machine's vector width. Nothing elsewhere.
#ifndef FR_SIMD_H
#define FR_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
// Feature levels, not CPU models: an "arch=skylake-avx512" clone is picked only on a CPU that
// GCC identifies as exactly that model (a Cascade Lake VM ran the baseline clone), while
// x86-64-v4 (AVX-512 F/BW/CD/DQ/VL) and x86-64-v3 (AVX2, FMA, BMI) are tested by feature bits.
#define FR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FR_CLONES
#endif

#endif
