/* Compiler attributes shared by the C headers of the kernels. */
#ifndef RNNFAST_COMPILER_H
#define RNNFAST_COMPILER_H

/* A helper each header defines for every module that includes it: a
 * module that uses none of them should not warn about it. */
#if defined(__GNUC__) || defined(__clang__)
#define RF_MAYBE_UNUSED __attribute__((unused))
#else
#define RF_MAYBE_UNUSED
#endif

#endif
