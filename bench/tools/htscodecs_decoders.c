// Which of htscodecs' rANS 32x16 order-0 decoders is fastest on this CPU (bench/results/rans-decode.md).
// 16 Mi codes of 6 levels drawn from a rounded Gaussian (about 2.3 bits each, like mqkv's affine codes),
// encoded once with RANS_ORDER_X32 as mqkv does, decoded best-of-7 with each decoder forced through
// rans_set_cpu, and checked against the input. Not part of the CMake build:
//   gcc -O2 bench/tools/htscodecs_decoders.c -o /tmp/htscodecs_decoders -lhtscodecs -lm
//   taskset -c 0 /tmp/htscodecs_decoders
#include <htscodecs/rANS_static4x16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  const unsigned n = 16u << 20;
  unsigned char* in = malloc(n);
  unsigned char* out = malloc(n);
  srand(1);
  for (unsigned i = 0; i < n; i++) {
    const double u1 = (rand() + 1.0) / (RAND_MAX + 2.0), u2 = (rand() + 1.0) / (RAND_MAX + 2.0);
    const double g = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
    int c = (int)floor(g * 1.2 + 3);
    in[i] = (unsigned char)(c < 0 ? 0 : c > 5 ? 5 : c);
  }
  unsigned clen = rans_compress_bound_4x16(n, RANS_ORDER_X32);
  unsigned char* cz = malloc(clen);
  if (!rans_compress_to_4x16(in, n, cz, &clen, RANS_ORDER_X32)) return 1;
  printf("compressed %u -> %u (%.3f bits/code)\n", n, clen, 8.0 * clen / n);
  const int cpus[] = {0, RANS_CPU_DEC_SSE4, RANS_CPU_DEC_AVX2, RANS_CPU_DEC_AVX512, -1};
  const char* names[] = {"scalar", "sse4", "avx2", "avx512", "auto"};
  for (int k = 0; k < 5; k++) {
    rans_set_cpu(cpus[k]);  // 0: scalar only; -1: everything this CPU has (htscodecs' own pick)
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
      unsigned got = n;
      const double t0 = now();
      rans_uncompress_to_4x16(cz, clen, out, &got);
      const double t = now() - t0;
      if (t < best) best = t;
      if (got != n || memcmp(in, out, n) != 0) {
        printf("%s: decoded codes differ\n", names[k]);
        return 1;
      }
    }
    printf("%-7s %.2f ms  %.2f G codes/s\n", names[k], best * 1e3, n / best / 1e9);
  }
  free(in);
  free(out);
  free(cz);
  return 0;
}
